"""Add-on preferences: the user's SMPL model file, the default device, and installing the engine's
Python dependencies for Blender's own Python.

Why an installer button rather than bundled wheels: torch alone is hundreds of MB per platform
(GBs with CUDA), far beyond what an extension zip should carry, while numpy already ships with
Blender. The button runs `<Blender's python> -m pip install --target <dir> ...` where <dir> is
the extension's user folder (`bpy.utils.extension_path_user(__package__, path="site-packages")`,
which survives add-on upgrades), and appends that folder to sys.path at the END so Blender's own
numpy keeps priority (numpy is also pinned to Blender's version so pip picks matching wheels).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading

import bpy
from bpy.props import EnumProperty, StringProperty

from . import _engine_path

# What engine.api needs at inference besides numpy: the model (torch, safetensors), audio decoding
# and features (librosa, soundfile, soxr, scipy; imageio-ffmpeg decodes what libsndfile cannot),
# and smplx for an optional SMPL body mesh. Versions are left to pip: Blender's Python differs.
REQUIREMENTS = ("torch", "safetensors", "librosa", "soundfile", "soxr", "scipy", "imageio-ffmpeg", "smplx")
IMPORT_NAMES = {"torch": "torch", "safetensors": "safetensors", "librosa": "librosa", "soundfile": "soundfile",
                "soxr": "soxr", "scipy": "scipy"}   # imageio-ffmpeg and smplx stay optional
_OFFLINE_HINTS = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
                  "ConnectTimeout", "ConnectionError", "No matching distribution", "Could not find a version",
                  "Name or service not known", "ProxyError")

DEVICE_ITEMS = [
    ('AUTO', "Auto", "A CUDA GPU when torch sees one, else the CPU"),
    ('CPU', "CPU", "Always the CPU (slower, always works)"),
    ('CUDA', "CUDA GPU", "An NVIDIA GPU through CUDA (needs a CUDA build of torch)"),
]


def addon_package() -> str:
    return __package__


def deps_dir(create: bool = False) -> str:
    """Where the dependencies go: the extension's user folder, or a scripts folder for a legacy add-on."""
    try:
        return bpy.utils.extension_path_user(__package__, path="site-packages", create=create)
    except (ValueError, TypeError, AttributeError):  # not loaded as an extension (bl_info add-on, tests)
        path = os.path.join(bpy.utils.user_resource('SCRIPTS', path="dance_generator_deps"), "site-packages")
        if create:
            os.makedirs(path, exist_ok=True)
        return path


def add_deps_to_path() -> None:
    path = deps_dir()
    if os.path.isdir(path):
        _engine_path.ensure(path)
        importlib.invalidate_caches()


def missing_dependencies() -> list[str]:
    """Packages the engine needs that cannot be imported from Blender's Python."""
    return [pkg for pkg, mod in IMPORT_NAMES.items() if importlib.util.find_spec(mod) is None]


def get(context=None):
    """This add-on's preferences, or None when it runs without being enabled (bpy module, batch)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def pip_command(target: str) -> list[str]:
    import numpy
    return [sys.executable, "-m", "pip", "install", "--upgrade", "--no-input", "--disable-pip-version-check",
            "--timeout", "20", "--retries", "1", "--target", target,
            f"numpy=={numpy.__version__}", *REQUIREMENTS]


def install_dependencies(target: str | None = None, env: dict | None = None) -> str:
    """Pip-install REQUIREMENTS into `target` (default: deps_dir). Returns a one-line summary;
    raises RuntimeError with a plain message (offline, pip missing, ...) on failure."""
    target = target or deps_dir(create=True)
    os.makedirs(target, exist_ok=True)
    log_path = os.path.join(target, "install.log")
    run_env = dict(os.environ if env is None else env, PYTHONNOUSERSITE="1")
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, env=run_env).returncode != 0:
        subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade"], capture_output=True, env=run_env)
    proc = subprocess.run(pip_command(target), capture_output=True, text=True, env=run_env)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        out = proc.stdout + proc.stderr
        if "No module named pip" in out:
            raise RuntimeError(f"Blender's Python has no pip (ensurepip failed); see {log_path}")
        if any(h in out for h in _OFFLINE_HINTS):
            raise RuntimeError(f"could not download the dependencies (offline or blocked by a proxy?); see {log_path}")
        raise RuntimeError(f"pip failed (exit {proc.returncode}); see {log_path}")
    add_deps_to_path()
    return f"installed {', '.join(REQUIREMENTS)} into {target}"


class _InstallState:
    """Result of the last install, written by its thread, read by the preferences panel."""
    lock = threading.Lock()
    running = False
    message = ""


class DANCE_OT_install_dependencies(bpy.types.Operator):
    """Download torch, librosa and the engine's other packages for Blender's own Python"""
    bl_idname = "dance.install_dependencies"
    bl_label = "Install Dependencies"
    bl_options = {'REGISTER'}

    def execute(self, context):
        if bpy.app.background:  # no timers headless: install on this thread
            try:
                self.report({'INFO'}, install_dependencies())
                return {'FINISHED'}
            except RuntimeError as e:
                self.report({'ERROR'}, str(e))
                return {'CANCELLED'}
        with _InstallState.lock:
            if _InstallState.running:
                self.report({'WARNING'}, "already installing")
                return {'CANCELLED'}
            _InstallState.running, _InstallState.message = True, "installing (this can take minutes)..."
        target = deps_dir(create=True)

        def work():
            try:
                msg = install_dependencies(target)
            except Exception as e:
                msg = f"ERROR: {e}"
            with _InstallState.lock:
                _InstallState.running, _InstallState.message = False, msg

        def poll():
            for window in bpy.context.window_manager.windows:
                for area in window.screen.areas:
                    area.tag_redraw()
            with _InstallState.lock:
                if _InstallState.running:
                    return 1.0
            add_deps_to_path()
            return None

        threading.Thread(target=work, daemon=True).start()
        bpy.app.timers.register(poll, first_interval=1.0)
        self.report({'INFO'}, f"installing dependencies into {target}")
        return {'FINISHED'}


class DancePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    smpl_model_path: StringProperty(
        name="SMPL Model File", subtype='FILE_PATH',
        description="Your own SMPL model file (e.g. SMPL_NEUTRAL.pkl or .npz, licensed separately and never "
                    "shipped). When set, 'Create SMPL Dancer' builds the real SMPL body with smplx instead of "
                    "the simple capsule figure")
    weights_path: StringProperty(
        name="Weights File", subtype='FILE_PATH',
        description="Advanced: a .safetensors checkpoint to use instead of the weights shipped with the add-on "
                    "(empty: the shipped weights)")
    default_device: EnumProperty(
        name="Default Device", items=DEVICE_ITEMS, default='AUTO',
        description="Where generation runs when the Dance panel's device is 'Preferences'")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "smpl_model_path")
        layout.prop(self, "default_device")
        layout.prop(self, "weights_path")
        box = layout.box()
        missing = missing_dependencies()
        box.label(text=("Missing Python packages: " + ", ".join(missing)) if missing
                  else "All engine dependencies are importable", icon='ERROR' if missing else 'CHECKMARK')
        box.label(text=f"Install folder: {deps_dir()}")
        with _InstallState.lock:
            running, message = _InstallState.running, _InstallState.message
        row = box.row()
        row.enabled = not running
        row.operator(DANCE_OT_install_dependencies.bl_idname, icon='IMPORT')
        if message:
            box.label(text=message, icon='ERROR' if message.startswith("ERROR") else 'INFO')


classes = (DANCE_OT_install_dependencies, DancePreferences)
