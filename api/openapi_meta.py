"""The OpenAPI document's MetaTrainSpec.config: the JSON Schema of nfcore's MetaTrainConfig, added when the
document is first built (nfcore.meta imports torch, which the API loads only when it is needed)."""

from __future__ import annotations

from fastapi import FastAPI

_PREFIX = "MetaTrainConfig_"


def document_meta_train_config(app: FastAPI) -> None:
    """Describe `MetaTrainSpec.config` (a partial MetaTrainConfig in the request model) by its real schema."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        doc = generate()
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        spec = components.get("MetaTrainSpec", {}).get("properties", {})
        if "config" in spec:
            from nfcore.meta.config import MetaTrainConfig

            schema = MetaTrainConfig.model_json_schema(ref_template=f"#/components/schemas/{_PREFIX}{{model}}")
            for name, definition in schema.pop("$defs", {}).items():
                components[f"{_PREFIX}{name}"] = definition
            components["MetaTrainConfig"] = schema
            spec["config"] = {"allOf": [{"$ref": "#/components/schemas/MetaTrainConfig"}],
                              "description": spec["config"].get("description", ""),
                              "examples": spec["config"].get("examples", [])}
        app.openapi_schema = doc
        return doc

    app.openapi = openapi


__all__ = ["document_meta_train_config"]
