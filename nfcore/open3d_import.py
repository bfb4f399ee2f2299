"""Import Open3D without system packages: preload libusb-1.0 from the `libusb-package` wheel if needed.

Open3D's Linux wheels link `libOpen3D.so` against `libusb-1.0.so.0` (DT_NEEDED) but do not ship it,
so `import open3d` fails on a machine without the system package (Debian: libusb-1.0-0). The PyPI
package `libusb-package` (an nfrecon dependency) ships `libusb_package/libusb-1.0.so`, whose SONAME
is `libusb-1.0.so.0`. Once that file is loaded into the process, the dynamic linker satisfies
libOpen3D's DT_NEEDED with it (glibc matches a needed name against the SONAMEs of loaded objects),
so `import open3d` works with nothing installed outside pip.

Use `import_open3d()` wherever product code needs Open3D, and `open3d_available()` to decide whether
to offer (or test) an Open3D feature. Both do a plain `import open3d` on every call (cheap once it is
in `sys.modules`), so `monkeypatch.setitem(sys.modules, "open3d", None)` still simulates its absence.
"""

from __future__ import annotations

import ctypes
import importlib
import sys
import threading
from types import ModuleType

__all__ = ["Open3DUnavailable", "import_open3d", "open3d_available", "open3d_problem", "libusb_source"]

LIBUSB_SONAME = "libusb-1.0.so.0"  # what libOpen3D.so lists as DT_NEEDED
INSTALL_HINT = "pip install open3d libusb-package (both are nfrecon dependencies: pip install -e . installs them)"

_lock = threading.Lock()
_libusb: str | None = None  # "system", the path of the preloaded packaged library, or None (not done / not found)
_libusb_problem: str | None = None  # why neither the system's nor the packaged libusb could be loaded
_libusb_done = False
_keep: list[ctypes.CDLL] = []  # the loaded handles stay referenced for the life of the process


class Open3DUnavailable(ImportError):
    """Open3D cannot be imported; the message says what is missing and how to install it.

    An ImportError, so `except ImportError` around an Open3D feature still catches it.
    """


def _ensure_libusb() -> None:
    """Make `libusb-1.0.so.0` resolvable for libOpen3D: the system's if the linker finds one, else the packaged one."""
    global _libusb, _libusb_problem, _libusb_done
    if _libusb_done or not sys.platform.startswith("linux"):
        return
    with _lock:
        if _libusb_done:
            return
        try:
            _keep.append(ctypes.CDLL(LIBUSB_SONAME, mode=ctypes.RTLD_GLOBAL))
            _libusb = "system"
        except OSError as system_exc:
            try:
                import libusb_package

                path = libusb_package.get_library_path()
                if path is None:
                    raise OSError("the installed libusb-package has no shared library for this platform")
                _keep.append(ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL))
                _libusb = str(path)
            except ImportError:
                _libusb_problem = f"{system_exc}; and the Python package libusb-package, which ships it, is not installed"
            except OSError as exc:
                _libusb_problem = f"{system_exc}; and libusb-package's library could not be loaded: {exc}"
        _libusb_done = True


def libusb_source() -> str | None:
    """Where libusb-1.0 came from: "system", the path of libusb-package's library, or None (none loaded)."""
    _ensure_libusb()
    return _libusb


def import_open3d() -> ModuleType:
    """The `open3d` module, after making sure its libusb-1.0 dependency can be resolved.

    Raises:
        Open3DUnavailable: Open3D (or a library it needs) is missing; the message names what and how to fix it.
    """
    _ensure_libusb()
    try:
        return importlib.import_module("open3d")
    except ImportError as exc:
        if (isinstance(exc, ModuleNotFoundError) and exc.name == "open3d") or sys.modules.get("open3d", 0) is None:
            what = "the Python package open3d is not installed"
        elif _libusb_problem is not None and "libusb" in str(exc):
            what = f"it needs libusb-1.0 ({LIBUSB_SONAME}), which could not be loaded: {_libusb_problem}"
        else:
            what = f"{type(exc).__name__}: {exc}"
            if _libusb not in (None, "system"):
                what += f" (libusb-1.0 was preloaded from {_libusb})"
        raise Open3DUnavailable(f"Open3D cannot be imported: {what}. Install: {INSTALL_HINT}") from exc


def open3d_problem() -> str | None:
    """Why `import_open3d()` fails in this process (its message), or None when it succeeds."""
    try:
        import_open3d()
    except ImportError as exc:
        return str(exc)
    return None


def open3d_available() -> bool:
    """Whether `import_open3d()` succeeds in this process."""
    return open3d_problem() is None
