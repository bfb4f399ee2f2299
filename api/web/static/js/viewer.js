// The 3D view (three.js, vendored): a mesh and/or a point cloud with orbit and zoom, flat or smooth shading,
// wireframe. Frames are drawn on demand (after a camera move or a setting change), not in a loop, so a
// 1M-triangle mesh costs GPU time only while it is being turned. Where one frame of the full mesh is slow
// (software WebGL, weak GPUs), a decimated copy (vertex clustering on a 64^3 grid: tens of thousands of triangles) is drawn while the
// camera moves and the full mesh again once it stops. The page imports this module lazily: the first page
// load does not fetch three.js.

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { PLYLoader } from "three/addons/loaders/PLYLoader.js";

// Above this many triangles a decimated copy is prepared; it is used only if a full frame is slow.
const LOD_TRIANGLES = 200_000;
const SLOW_FRAME_MS = 50;

// A coarse copy of `geometry` by vertex clustering: vertices are merged per cell of a `cells`^3 grid over the
// bounding box (at their mean), triangles that collapse are dropped. Linear time, no connectivity needed.
export function clusterDecimate(geometry, cells = 64) {
  const pos = geometry.getAttribute("position").array;
  const nv = pos.length / 3;
  const index = geometry.index ? geometry.index.array : null;
  geometry.computeBoundingBox();
  const { min, max } = geometry.boundingBox;
  const size = Math.max(max.x - min.x, max.y - min.y, max.z - min.z) || 1;
  const scale = cells / size;
  const n = cells + 1;
  const cellId = new Int32Array(n * n * n).fill(-1);
  const vertexCell = new Int32Array(nv);
  const sums = new Float64Array(nv * 3); // at most one cluster per vertex
  const counts = new Uint32Array(nv);
  let clusters = 0;
  for (let i = 0; i < nv; i++) {
    const x = pos[3 * i], y = pos[3 * i + 1], z = pos[3 * i + 2];
    const key = (Math.floor((x - min.x) * scale) * n + Math.floor((y - min.y) * scale)) * n + Math.floor((z - min.z) * scale);
    let c = cellId[key];
    if (c < 0) c = cellId[key] = clusters++;
    vertexCell[i] = c;
    sums[3 * c] += x;
    sums[3 * c + 1] += y;
    sums[3 * c + 2] += z;
    counts[c]++;
  }
  const positions = new Float32Array(clusters * 3);
  for (let c = 0; c < clusters; c++) for (let k = 0; k < 3; k++) positions[3 * c + k] = sums[3 * c + k] / counts[c];
  const nt = index ? index.length / 3 : nv / 3;
  const tris = new Uint32Array(nt * 3);
  let m = 0;
  for (let t = 0; t < nt; t++) {
    const a = vertexCell[index ? index[3 * t] : 3 * t];
    const b = vertexCell[index ? index[3 * t + 1] : 3 * t + 1];
    const c = vertexCell[index ? index[3 * t + 2] : 3 * t + 2];
    if (a === b || b === c || a === c) continue;
    tris[m++] = a;
    tris[m++] = b;
    tris[m++] = c;
  }
  const out = new THREE.BufferGeometry();
  out.setAttribute("position", new THREE.BufferAttribute(positions, 3));
  out.setIndex(new THREE.BufferAttribute(tris.slice(0, m), 1));
  out.computeVertexNormals();
  return out;
}

export class Viewer {
  constructor(container) {
    this.container = container;
    // preserveDrawingBuffer: screenshots and the tests' pixel reads see the last frame
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
    this.renderer.setClearColor(0xf4f6f8);
    const canvas = this.renderer.domElement;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", container.dataset.label || "3D view");
    canvas.tabIndex = 0;
    container.append(canvas);
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(40, 1, 0.001, 1000);
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x667788, 1.6));
    const sun = new THREE.DirectionalLight(0xffffff, 1.8);
    sun.position.set(1, 2, 1.5);
    this.camera.add(sun); // the light follows the camera: the side one looks at is always lit
    this.scene.add(this.camera);
    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.listenToKeyEvents(canvas); // arrow keys pan when the canvas has focus
    this.controls.addEventListener("change", () => this.draw());
    // Level of detail: the coarse copy while the camera moves (if full frames are slow), the full mesh after
    this.controls.addEventListener("start", () => this.setMoving(true));
    this.controls.addEventListener("end", () => {
      clearTimeout(this.stillTimer);
      this.stillTimer = setTimeout(() => this.setMoving(false), 250);
    });
    this.proxy = null;
    this.lod = false; // decided from the first full frame's time
    this.fullFrameMs = null;
    this.material = new THREE.MeshStandardMaterial({ color: 0xb8c4d6, roughness: 0.6, metalness: 0.05, flatShading: false, side: THREE.DoubleSide });
    this.mesh = null;
    this.points = null;
    this.frames = 0;
    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(container);
    this.resize();
  }

  resize() {
    const w = this.container.clientWidth || 480;
    const h = this.container.clientHeight || 360;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.draw();
  }

  draw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      const measure = this.measureNext;
      const t0 = performance.now();
      this.renderer.render(this.scene, this.camera);
      if (measure) {
        // Read one pixel so the time includes the GPU's work (once per mesh).
        const gl = this.renderer.getContext();
        gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
        this.fullFrameMs = performance.now() - t0;
        this.measureNext = false;
        this.lod = this.proxy !== null && this.fullFrameMs > SLOW_FRAME_MS;
      }
      this.frames++;
      this.container.dataset.frames = this.frames; // lets tests wait for a drawn frame
    });
  }

  frame() {
    const box = new THREE.Box3();
    if (this.mesh) box.expandByObject(this.mesh);
    if (this.points) box.expandByObject(this.points);
    if (box.isEmpty()) return;
    const center = box.getCenter(new THREE.Vector3());
    const radius = box.getSize(new THREE.Vector3()).length() / 2 || 1;
    this.controls.target.copy(center);
    this.camera.position.copy(center).add(new THREE.Vector3(0.9, 0.6, 1.4).normalize().multiplyScalar(radius * 3));
    this.camera.near = radius / 100;
    this.camera.far = radius * 100;
    this.camera.updateProjectionMatrix();
    this.controls.update();
    this.draw();
  }

  setPoints(positions, { color = 0xc2410c } = {}) {
    if (this.points) this.scene.remove(this.points);
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.BufferAttribute(positions, 3));
    geometry.computeBoundingSphere();
    const size = geometry.boundingSphere.radius / 150;
    this.points = new THREE.Points(geometry, new THREE.PointsMaterial({ color, size, sizeAttenuation: true }));
    this.scene.add(this.points);
    if (!this.mesh) this.frame();
    else this.draw();
  }

  showPoints(on) {
    if (this.points) this.points.visible = on;
    this.draw();
  }

  setGeometry(geometry) {
    if (this.mesh) this.scene.remove(this.mesh);
    if (this.proxy) this.scene.remove(this.proxy);
    if (!geometry.getAttribute("normal")) geometry.computeVertexNormals();
    this.mesh = new THREE.Mesh(geometry, this.material);
    this.scene.add(this.mesh);
    const triangles = geometry.index ? geometry.index.count / 3 : geometry.getAttribute("position").count / 3;
    this.proxy = null;
    if (triangles > LOD_TRIANGLES) {
      this.proxy = new THREE.Mesh(clusterDecimate(geometry), this.material);
      this.proxy.visible = false;
      this.scene.add(this.proxy);
    }
    this.measureNext = true;
    this.frame();
    return triangles;
  }

  setMoving(moving) {
    if (!this.lod) return;
    clearTimeout(this.stillTimer);
    this.proxy.visible = moving;
    this.mesh.visible = !moving;
    this.draw();
  }

  setShading(flat) {
    this.material.flatShading = flat;
    this.material.needsUpdate = true;
    this.draw();
  }

  setWireframe(on) {
    this.material.wireframe = on;
    this.draw();
  }

  dispose() {
    this.resizeObserver.disconnect();
    this.controls.dispose();
    this.renderer.dispose();
    this.renderer.domElement.remove();
  }
}

// One BufferGeometry from a glb or ply file's bytes (glb: all meshes merged into the first one's frame).
export async function parseMesh(buffer, name) {
  if (name.endsWith(".glb")) {
    const gltf = await new GLTFLoader().parseAsync(buffer, "");
    const parts = [];
    gltf.scene.updateMatrixWorld(true);
    gltf.scene.traverse((o) => {
      if (o.isMesh) parts.push(o.geometry.clone().applyMatrix4(o.matrixWorld));
    });
    if (!parts.length) throw new Error(`${name} holds no mesh`);
    if (parts.length === 1) return parts[0];
    const { mergeGeometries } = await import("three/addons/utils/BufferGeometryUtils.js");
    return mergeGeometries(parts.map((g) => (g.index ? g.toNonIndexed() : g)));
  }
  if (name.endsWith(".ply")) return new PLYLoader().parse(buffer);
  throw new Error(`no 3D view for ${name}: glb and ply only`);
}

// Point positions for the preview of an upload: .xyz text (x y z [nx ny nz] per line) or .ply (points or
// mesh vertices). Other formats return null (the validation report is still shown).
export function parsePoints(buffer, name, maxPoints = 500_000) {
  const lower = name.toLowerCase();
  let pos = null;
  if (lower.endsWith(".xyz") || lower.endsWith(".txt")) {
    const text = new TextDecoder().decode(buffer);
    const out = [];
    for (const line of text.split("\n")) {
      const v = line.trim().split(/[\s,]+/);
      if (v.length >= 3 && !line.startsWith("#")) out.push(+v[0], +v[1], +v[2]);
    }
    pos = new Float32Array(out);
  } else if (lower.endsWith(".ply")) {
    pos = new PLYLoader().parse(buffer).getAttribute("position").array;
  } else {
    return null;
  }
  const n = pos.length / 3;
  if (n <= maxPoints) return pos;
  // Too many to draw smoothly: a regular subsample
  const step = Math.ceil(n / maxPoints);
  const sub = new Float32Array(Math.ceil(n / step) * 3);
  for (let i = 0, j = 0; i < n; i += step, j += 3) sub.set(pos.subarray(i * 3, i * 3 + 3), j);
  return sub;
}
