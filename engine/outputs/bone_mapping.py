"""Which bone of a humanoid armature plays which SMPL joint: shipped presets, tolerant name
matching, a fallback from the hierarchy, and the checks a bone map must pass (pure numpy).

A bone map is a dict {SMPL joint name: bone name}, each bone used once, plus an optional "root"
entry naming the bone that carries the dancer's location (default: the pelvis's bone). Shipped
presets live in engine/outputs/bone_maps/<name>.json: {"title": ..., "bones": {joint: name or [names]},
"root": name}; a list gives alternatives, the first one the armature has wins.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..body.skeleton import JOINT_INDEX, JOINT_NAMES, PARENTS
from ..errors import EngineError

PRESET_DIR = Path(__file__).resolve().parent / "bone_maps"
# Tie-break order when two presets fit a rig equally well (the more specific one first).
PRESET_ORDER = ("smpl", "mixamo", "rigify", "vrm", "unreal_ue5", "unreal_ue4", "auto_rig_pro",
                "character_creator", "daz_genesis", "secondlife", "makehuman")
ROOT_KEY = "root"
LEG_JOINTS = ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee")   # a dancer needs these
# Bones of a rig's machinery (Rigify's MCH/ORG/DEF, twist helpers) never take a shared rotation.
MECHANISM = re.compile(r"^(mch|org|def|tweak|vis|wgt)[-_.]|(^|[-_.:])(twist|roll|helper)", re.IGNORECASE)
# A twist bone inside a limb chain (thigh -> thighTwist -> shin, as DAZ-style and some game rigs have
# it) splits a rigid segment in two: the hierarchy mapping steps over it, so the segment's first
# bone takes the joint and the twist bone follows it unchanged, instead of the limb bending in the
# middle of the thigh or upper arm.
TWIST = re.compile(r"twist", re.IGNORECASE)

BoneMap = dict
# The refusal of a rest pose that does not stand (an FBX read with the wrong up axis).
NOT_UPRIGHT = "the thigh bones do not point down to the feet in the rest pose; is the character upright (Z up)?"


class RetargetError(EngineError):
    """A rig or bone map that cannot be used, in one line."""


# ----------------------------------------------------------------------------- name matching

_TOKEN = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_SIDES = {"l": "L", "left": "L", "r": "R", "right": "R"}


def bone_key(name: str) -> str:
    """A name reduced to what identifies the bone: "mixamorig1:LeftUpLeg", "Left_UpLeg" and
    "upLeg.L" all give "L|upleg". Namespaces ("x:") and Mixamo prefixes go, case and separators
    do not matter, a side token (l/left/r/right, anywhere) becomes the side, leading zeros of
    numbers go (spine_01 == Spine1)."""
    name = name.rsplit(":", 1)[-1]
    tokens = [t.lower() for part in re.split(r"[^A-Za-z0-9]+", name) for t in _TOKEN.findall(part)]
    if tokens and re.fullmatch(r"mixamorig\d*", tokens[0]):
        tokens = tokens[1:]
    side, rest = "", []
    for t in tokens:
        if t in _SIDES and not side:
            side = _SIDES[t]
        else:
            rest.append(str(int(t)) if t.isdigit() else t)
    return f"{side}|{''.join(rest)}"


def root_bone_name(bone_map: BoneMap) -> str:
    """The bone that carries the dancer's location: the map's "root" entry, else the pelvis's bone."""
    return bone_map.get(ROOT_KEY, bone_map["pelvis"])


def list_presets() -> list[str]:
    found = {p.stem for p in PRESET_DIR.glob("*.json")}
    return [n for n in PRESET_ORDER if n in found] + sorted(found - set(PRESET_ORDER))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise RetargetError(f"cannot read bone map {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise RetargetError(f"bone map {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise RetargetError(f"bone map {path} must hold a JSON object")
    return data


def _entries(data: dict, where) -> dict[str, list[str]]:
    """{joint or "root": [candidate names]} from a preset/map file's content."""
    bones = data.get("bones", data)
    if not isinstance(bones, dict):
        raise RetargetError(f"bone map {where}: \"bones\" must be an object of SMPL joint -> bone name")
    out = {}
    root = [(ROOT_KEY, data[ROOT_KEY])] if ROOT_KEY in data and "bones" in data else []
    for key, value in list(bones.items()) + root:
        names = [value] if isinstance(value, str) else value
        if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
            raise RetargetError(f"bone map {where}: {key!r} must name a bone (a string), got {value!r}")
        out[key] = names
    return out


def resolve(entries: dict[str, list[str]], bone_names) -> BoneMap:
    """The entries whose bone the rig has (tolerant names), as {joint: the rig's own bone name}."""
    by_key: dict[str, str] = {}
    for n in bone_names:
        by_key.setdefault(bone_key(n), n)
    exact = set(bone_names)
    out = {}
    for joint, names in entries.items():
        for n in names:
            hit = n if n in exact else by_key.get(bone_key(n))
            if hit is not None:
                out[joint] = hit
                break
    return out


def load_preset(name: str, rig=None) -> BoneMap:
    """A shipped preset; with a rig, its names resolved to the rig's own bones (missing ones left out)."""
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        raise RetargetError(f"no shipped bone-map preset {name!r} (presets: {', '.join(list_presets())})")
    entries = _entries(_read_json(path), path.name)
    if rig is None:
        return {k: v[0] for k, v in entries.items()}
    return resolve(entries, rig.names)


def load_bone_map(path) -> BoneMap:
    """A bone map saved by save_bone_map (or a preset file): {joint: bone name}."""
    path = Path(path)
    entries = _entries(_read_json(path), path.name)
    return {k: v[0] for k, v in entries.items()}


def save_bone_map(bone_map: BoneMap, path, title: str = "") -> Path:
    path = Path(path)
    bones = {j: bone_map[j] for j in JOINT_NAMES if j in bone_map}
    data = {"title": title or path.stem, "bones": bones}
    if ROOT_KEY in bone_map:
        data[ROOT_KEY] = bone_map[ROOT_KEY]
    try:
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        raise RetargetError(f"cannot write bone map {path}: {e.strerror or e}") from None
    return path


# ----------------------------------------------------------------------------- checks

def _root_of(parents, b: int) -> int:
    while parents[b] >= 0:
        b = parents[b]
    return b


def is_ancestor(parents, a: int, b: int) -> bool:
    """True when bone a is b or one of b's ancestors."""
    while b >= 0:
        if b == a:
            return True
        b = parents[b]
    return False


def check_bone_map(rig, bone_map: BoneMap) -> None:
    """Raise RetargetError (one line) unless `bone_map` can drive `rig`."""
    if not isinstance(bone_map, dict):
        raise RetargetError(f"a bone map must be a dict of SMPL joint -> bone name, got {type(bone_map).__name__}")
    unknown = [k for k in bone_map if k not in JOINT_INDEX and k != ROOT_KEY]
    if unknown:
        raise RetargetError(f"bone map: {unknown[0]!r} is not an SMPL joint "
                            f"(joints: {', '.join(JOINT_NAMES[:4])}, ...)")
    index = {n: i for i, n in enumerate(rig.names)}
    missing = sorted({str(v) for v in bone_map.values() if v not in index})
    if missing:
        listed = ", ".join(repr(m) for m in missing[:4]) + (" ..." if len(missing) > 4 else "")
        raise RetargetError(f"the armature has no bone{'s' if len(missing) > 1 else ''} {listed} named in the bone map")
    seen: dict[str, str] = {}
    for joint in JOINT_NAMES:
        bone = bone_map.get(joint)
        if bone is None:
            continue
        if bone in seen:
            raise RetargetError(f"bone map: bone {bone!r} is mapped twice ({seen[bone]} and {joint}); "
                                "each bone plays one joint")
        seen[bone] = joint
    lacking = [j for j in LEG_JOINTS if j not in bone_map]
    if lacking:
        raise RetargetError(f"bone map has no legs: {', '.join(lacking)} not mapped "
                            "(a dancer needs the pelvis, both hips and knees)")
    mapped = {j: index[bone_map[j]] for j in JOINT_NAMES if j in bone_map}
    parents = rig.effective_parents()
    followers = [rig.names[b] for b in mapped.values() if b in rig.follows]
    if followers:
        raise RetargetError(f"bone map: {followers[0]!r} copies another bone's transforms (a constraint); "
                            "map the bone it copies")
    roots = sorted({_root_of(parents, b) for b in mapped.values()})
    if len(roots) > 1:
        listed = ", ".join(rig.names[r] for r in roots[:4])
        raise RetargetError(f"the mapped bones hang under several root bones ({listed}); they must form one hierarchy")
    for joint, b in mapped.items():
        a = PARENTS[JOINT_INDEX[joint]]
        while a >= 0 and JOINT_NAMES[a] not in mapped:
            a = PARENTS[a]
        if a >= 0 and not is_ancestor(parents, mapped[JOINT_NAMES[a]], b):
            raise RetargetError(f"bone map: {joint}'s bone {rig.names[b]!r} does not hang under "
                                f"{JOINT_NAMES[a]}'s bone {rig.names[mapped[JOINT_NAMES[a]]]!r}")
    if ROOT_KEY in bone_map and not is_ancestor(parents, index[bone_map[ROOT_KEY]], mapped["pelvis"]):
        raise RetargetError(f"bone map: the root bone {bone_map[ROOT_KEY]!r} must be the pelvis's bone "
                            "or one of its parents")
    root = index[root_bone_name(bone_map)]
    if rig.connected[root]:
        movable = rig.names[_movable_root(rig, root)]
        raise RetargetError(f"bone map: the root bone {rig.names[root]!r} is connected to its parent, so Blender "
                            f"ignores its location and the dancer could not travel: map the root to {movable!r}")


def _movable_root(rig, bone: int) -> int:
    """`bone`, or its nearest ancestor that is not connected to its parent (whose location moves it)."""
    while rig.connected[bone] and rig.parents[bone] >= 0:
        bone = rig.parents[bone]
    return bone


def with_movable_root(rig, bone_map: BoneMap) -> BoneMap:
    """`bone_map` with the travel on a bone that can take it: a pelvis (or root) bone connected to
    its parent ignores location (a VRM import connects the hips to the root bone: the dancer never
    left its spot, the feet sliding under it), so the nearest ancestor that is not connected does."""
    index = {n: i for i, n in enumerate(rig.names)}
    name = bone_map.get(ROOT_KEY, bone_map.get("pelvis"))
    if name not in index:     # a map without a pelvis: check_bone_map says so
        return bone_map
    root = _movable_root(rig, index[name])
    return bone_map if rig.names[root] == name else {**bone_map, ROOT_KEY: rig.names[root]}


# ----------------------------------------------------------------------------- automatic mapping

def _fits(rig, bone_map: BoneMap) -> bool:
    try:
        check_bone_map(rig, bone_map)
    except RetargetError:
        return False
    return True


def _best_preset(rig) -> tuple[str | None, BoneMap]:
    best, best_map, best_score = None, {}, 0
    for name in list_presets():
        m = with_movable_root(rig, load_preset(name, rig))
        score = sum(1 for k in m if k != ROOT_KEY)
        if score > best_score and _fits(rig, m):
            best, best_map, best_score = name, m, score
    return best, best_map


def detect_preset(rig) -> str | None:
    """The shipped preset that fits the rig's bone names best (None when none has legs)."""
    return _best_preset(rig)[0]


def auto_map(rig) -> BoneMap:
    """A bone map for `rig`: the best-fitting shipped preset, else one read from the hierarchy.
    Joints a preset leaves out are read from the hierarchy where it finds them (_filled_in): a
    rig named partly like a preset (forearm_l, toes_l and neck on an Unreal-like rig) kept its
    elbows straight, toes and neck still, without a word (QA)."""
    name, m = _best_preset(rig)
    if name is None:
        m = with_movable_root(rig, map_by_hierarchy(rig))
        check_bone_map(rig, m)
        return m
    try:
        found = map_by_hierarchy(rig)
    except RetargetError:
        return m
    return _filled_in(rig, m, found)


def _filled_in(rig, m: BoneMap, found: BoneMap) -> BoneMap:
    """`m` with the joints it lacks taken from `found` (the hierarchy's map). A whole arm missing
    (a SecondLife-style rig whose arms are lUpArm, lLoArm) is taken as the hierarchy has it; a
    single joint only where its bone lies between the bones `m` gives the SMPL joints above and
    below it (the two readings of the rig agree there)."""
    for side in ("left", "right"):
        if f"{side}_shoulder" not in m and f"{side}_elbow" not in m:
            arm = {f"{side}_{j}": found[f"{side}_{j}"] for j in ("collar", "shoulder", "elbow", "wrist")
                   if f"{side}_{j}" in found and f"{side}_{j}" not in m and found[f"{side}_{j}"] not in m.values()}
            if _fits(rig, {**m, **arm}):
                m = {**m, **arm}
    index = {name: i for i, name in enumerate(rig.names)}
    parents = list(rig.parents)
    for joint in JOINT_NAMES:                      # parents first: a joint filled in bounds the ones below it
        if joint in m or joint not in found or found[joint] in m.values():
            continue
        bone = index[found[joint]]
        above = _smpl_ancestors(joint)
        mapped_above = next((a for a in above if a in m), None)
        below = [j for j in JOINT_NAMES if joint in _smpl_ancestors(j) and j in m]
        if mapped_above is not None and not is_ancestor(parents, index[m[mapped_above]], bone):
            continue
        if any(not is_ancestor(parents, bone, index[m[j]]) for j in below):
            continue
        if joint.endswith("_foot") and _digits_beside(rig, bone) >= 3:
            continue                # one of a foot's five toes (MakeHuman) is no ball of the foot
        if _fits(rig, {**m, joint: found[joint]}):
            m = {**m, joint: found[joint]}
    return m


def _digits_beside(rig, bone: int) -> int:
    """How many deforming bones hang from `bone`'s parent, itself included."""
    parent, deform = rig.parents[bone], _deforming(rig)
    return sum(1 for b, p in enumerate(rig.parents) if p == parent and p >= 0 and deform[b])


def _deforming(rig) -> list[bool]:
    """Each bone's deform flag; all bones when none deforms (a bare skeleton, a BVH import)."""
    return [bool(d) for d in rig.deform] if any(rig.deform) else [True] * len(rig.names)


def _smpl_ancestors(joint: str) -> list[str]:
    """The SMPL joints above `joint`, nearest first."""
    out, j = [], PARENTS[JOINT_INDEX[joint]]
    while j >= 0:
        out.append(JOINT_NAMES[j])
        j = PARENTS[j]
    return out


# How far (a share of the body's height) the head's leaf may stand sideways from between the
# feet: an upright character's head is within a tenth; a T-pose's hands are half the height out.
HEAD_OFF_CENTRE = 0.2


def map_by_hierarchy(rig) -> BoneMap:
    """Find the body from the rest pose alone (character upright, Z up in the world, facing any
    way about Z): the pelvis is where the paths to the two lowest leaves (the feet) and to the
    highest leaf above them (the head) meet; the legs are the two descending chains, the arms the two
    chains that leave the spine above the pelvis and reach furthest sideways. Left and right
    come from the bone names where they say it (thigh_l, Left Thigh, upLeg.L), else from where
    the toes point (the character's left is to the left of its toes)."""
    n = len(rig.names)
    parents = list(rig.parents)
    heads = rig.world_heads()
    kids: list[list[int]] = [[] for _ in range(n)]
    for b, p in enumerate(parents):
        if p >= 0:
            kids[p].append(b)
    deform = _deforming(rig)
    roots = [b for b in range(n) if parents[b] < 0 and _subtree_has(b, kids, deform)]
    if len(roots) != 1:
        names = ", ".join(rig.names[r] for r in roots[:4]) or "none"
        raise RetargetError(f"cannot find a humanoid: the armature has {len(roots)} root bones with deforming bones "
                            f"({names}); map the bones by hand")
    body = [b for b in _descendants(roots[0], kids) if deform[b]]
    leaves = [b for b in body if not any(deform[k] for k in _descendants(b, kids) if k != b)]
    z = heads[:, 2]
    height = z[body].max() - z[body].min()
    if len(leaves) < 3 or height <= 0:
        raise RetargetError("cannot find a humanoid in the armature's hierarchy (too few bones); map the bones by hand")
    near = 1e-3 * height     # heads closer than this are one joint
    tails = rig.world_tails()
    # Feet: the low leaves, one group per leg. Leaves of one foot (toe, heel) meet low down (at
    # the ankle or the knee); the two legs meet no lower than the hips.
    low = [b for b in leaves if z[b] < z[body].min() + 0.2 * height]
    groups: dict[int, list[int]] = {}
    for b in low:
        up = b
        while parents[up] >= 0 and z[parents[up]] < z[body].min() + 0.35 * height:
            up = parents[up]
        groups.setdefault(up, []).append(b)
    if len(groups) < 2:
        raise RetargetError("cannot find two legs in the armature's hierarchy (no two low chains; "
                            "is the character upright, Z up?); map the bones by hand")
    legs = sorted(groups.values(), key=lambda g: min(z[b] for b in g))[:2]
    lowest = [min(g, key=lambda b: z[b]) for g in legs]
    # The head is the highest leaf above the feet: wings, raised arms or antlers may reach higher
    # but stand off to the side (QA: an unnamed rig's wing tip became the head, the wing the neck).
    between_feet = heads[lowest].mean(axis=0)
    central = [b for b in leaves if np.hypot(*(heads[b] - between_feet)[:2]) < HEAD_OFF_CENTRE * height]
    top = max(central or leaves, key=lambda b: z[b])
    pelvis = _common_ancestor([_path_from_root(b, parents) for b in (*lowest, top)])
    out: BoneMap = {"pelvis": rig.names[pelvis]}
    # A deforming bone above the pelvis (3ds Max Biped: the legs hang from Bip01 Spine, under Bip01
    # Pelvis) would stay where it stands while the body travels away, tearing the body it skins:
    # the highest such bone takes the dance's travel (the root; the pelvis keeps the rotation).
    above = [a for a in _path_from_root(pelvis, parents)[:-1] if deform[a]]
    if above:
        out[ROOT_KEY] = rig.names[above[0]]
    found = []
    for foot in lowest:
        chain = _limb_chain(_after(_path_from_root(foot, parents), pelvis), rig.names, heads, near)
        limb, after = _limb_joints(chain, heads, tails, rig.lengths)
        if len(limb) < 2:
            raise RetargetError("cannot find a leg's thigh and shin in the hierarchy; map the bones by hand")
        if not thighs_point_down(heads[limb[:1]], heads[limb[1:2]]).all():   # lying down: no leg
            raise RetargetError(NOT_UPRIGHT)
        ankle = after[0] if after else None
        toe, reach = _toe_and_reach(ankle, kids, deform, heads, tails, parents) if ankle is not None else (None, np.zeros(3))
        found.append(dict(limb=limb, ankle=ankle, toe=toe, reach=reach,
                          centre=heads[[b for b in chain if b not in (ankle, toe)] or chain].mean(axis=0),
                          side=_named_side(chain, rig.names)))
    forward = found[0]["reach"] + found[1]["reach"]
    if np.linalg.norm(forward) < 0.02 * height:
        forward = np.array([0.0, -1.0, 0.0])     # feet that point nowhere: facing -y, Blender's front
    left_axis = np.cross([0.0, 0.0, 1.0], forward / np.linalg.norm(forward))   # left = up x forward
    if {found[0]["side"], found[1]["side"]} == {"L", "R"}:
        first_left = found[0]["side"] == "L"
    else:
        first_left = float(np.dot(found[0]["centre"] - found[1]["centre"], left_axis)) > 0
    sides = {"left": found[0 if first_left else 1], "right": found[1 if first_left else 0]}
    across = (sides["left"]["centre"] - sides["right"]["centre"]) * [1.0, 1.0, 0.0]
    left_axis = across / np.linalg.norm(across) if np.linalg.norm(across) > near else left_axis
    for side, leg in sides.items():
        out[f"{side}_hip"], out[f"{side}_knee"] = rig.names[leg["limb"][0]], rig.names[leg["limb"][1]]
        for joint, b in (("ankle", leg["ankle"]), ("foot", leg["toe"])):
            if b is not None:
                out[f"{side}_{joint}"] = rig.names[b]
    spine = _after(_path_from_root(top, parents), pelvis)
    on_spine = set(spine)
    chest = None
    lateral = (heads - heads[pelvis]) @ left_axis
    for s, side in ((1, "left"), (-1, "right")):
        # Arm tips: leaves on this side that branch off the spine above the pelvis (an A-pose's
        # fingertips may hang lower than the pelvis).
        tips = [b for b in leaves if b not in on_spine and np.sign(lateral[b]) == s
                and any(a in on_spine for a in _path_from_root(b, parents))]
        if not tips:
            continue
        tip = max(tips, key=lambda b: abs(lateral[b]))
        arm_path = _path_from_root(tip, parents)
        branch = max(i for i, a in enumerate(arm_path) if a in on_spine)
        chest = arm_path[branch] if chest is None else chest
        chain = _limb_chain(arm_path[branch + 1:], rig.names, heads, near)
        limb, after = _limb_joints(chain, heads, tails, rig.lengths)
        if len(limb) < 2:
            continue
        i = chain.index(limb[0])
        if i > 0:
            out[f"{side}_collar"] = rig.names[chain[i - 1]]
        out[f"{side}_shoulder"], out[f"{side}_elbow"] = rig.names[limb[0]], rig.names[limb[1]]
        if after:
            out[f"{side}_wrist"] = rig.names[after[0]]
    if chest is None:
        # No arm leaves the spine above the pelvis: what was taken for legs hangs from the chest
        # (a rig without legs: its arms, or its fingers, are the lowest chains on both sides).
        raise RetargetError("cannot find a humanoid in the armature's hierarchy (no arms above the legs' pelvis; "
                            "does it have legs?); map the bones by hand")
    cut = spine.index(chest) + 1 if chest in spine else max(1, len(spine) - 2)
    torso, upper = spine[:cut], _limb_chain(spine[cut:], rig.names, heads, near, twists=False)
    picks = {1: ("spine3",), 2: ("spine1", "spine3")}.get(len(torso), ("spine1", "spine2", "spine3"))
    at = {1: [0], 2: [0, 1]}.get(len(torso), [0, len(torso) // 2, len(torso) - 1])
    for joint, i in zip(picks, at if torso else []):
        out[joint] = rig.names[torso[i]]
    if len(upper) == 1:
        out["head"] = rig.names[upper[0]]
    elif len(upper) >= 2:
        seg = _segments(upper, heads, rig.lengths)
        head = 1 + int(np.argmax(seg[1:]))
        out["neck"], out["head"] = rig.names[upper[0]], rig.names[upper[head]]
    return out


def thighs_point_down(hips: np.ndarray, knees: np.ndarray) -> np.ndarray:
    """Per leg (heads of hips and knees, (N, 3), Z up): whether the thigh points down within 60
    degrees of vertical, as a standing rest pose's do (T-pose, A-pose, a wide stance)."""
    thigh = hips - knees
    return thigh[:, 2] >= 0.5 * np.linalg.norm(thigh, axis=-1)


def _toe_and_reach(ankle: int, kids, deform, heads, tails, parents) -> tuple[int | None, np.ndarray]:
    """The toe bone below `ankle` and the foot's horizontal reach from it: where the deforming
    bones below the ankle (heads and tails) get furthest from it is the toes' tip, in front; a
    heel bone reaches less far, behind. The toe is the first bone on the way to that tip."""
    points = [(b, p) for b in _descendants(ankle, kids) if deform[b] for p in (heads[b], tails[b])]
    tip, point = max(points, key=lambda bp: np.hypot(*(bp[1] - heads[ankle])[:2]))
    path = _after(_path_from_root(tip, parents), ankle)
    return (path[0] if path else None), (point - heads[ankle]) * [1.0, 1.0, 0.0]


def _named_side(chain: list[int], names) -> str:
    """"L" or "R" when the bone names of a limb chain say which side it is (bone_key's side
    token, most bones agreeing), else ""."""
    votes = [bone_key(names[b]).split("|", 1)[0] for b in chain]
    left, right = votes.count("L"), votes.count("R")
    return "L" if left > right else "R" if right > left else ""


def _limb_chain(chain: list[int], names, heads, near: float, twists: bool = True) -> list[int]:
    """A chain of bones as the joints it bends at: without its twist bones (TWIST), and without
    a bone whose head is where the bone before it starts (Blender's metarig hangs its face bones
    from a "face" bone on the head's own head; a helper on a joint): the first bone at a joint
    takes it, the others follow. Unchanged where that would leave fewer than two bones."""
    kept = []
    for b in chain:
        if twists and TWIST.search(names[b]):
            continue
        if kept and np.linalg.norm(heads[b] - heads[kept[-1]]) <= near:
            continue
        kept.append(b)
    return kept if len(kept) >= 2 else chain


def _subtree_has(b, kids, flags) -> bool:
    return any(flags[k] for k in _descendants(b, kids))


def _descendants(b: int, kids) -> list[int]:
    out, stack = [], [b]
    while stack:
        k = stack.pop()
        out.append(k)
        stack.extend(kids[k])
    return out


def _path_from_root(b: int, parents) -> list[int]:
    path = []
    while b >= 0:
        path.append(b)
        b = parents[b]
    return path[::-1]


def _common_ancestor(paths: list[list[int]]) -> int:
    common = paths[0][0]
    for i in range(min(len(p) for p in paths)):
        if len({p[i] for p in paths}) != 1:
            break
        common = paths[0][i]
    return common


def _after(path: list[int], b: int) -> list[int]:
    return path[path.index(b) + 1:] if b in path else path


def _segments(chain: list[int], heads, lengths) -> np.ndarray:
    """Length of each bone along a chain: head to the next bone's head (the last: its own length)."""
    seg = [float(np.linalg.norm(heads[chain[i + 1]] - heads[chain[i]])) for i in range(len(chain) - 1)]
    return np.array(seg + [float(lengths[chain[-1]])]) if chain else np.zeros(0)


# Two bones are the halves of one limb segment (a twist split no name says) when they are this alike
# in length, the second starts at the first's tail and both point the same way at rest.
HALVES_LENGTH_RATIO = 1.67
HALVES_DEGREES = 3.0
# A limb's two segments (upper arm and forearm, thigh and shin) are this alike in length.
SEGMENTS_LENGTH_RATIO = 1.67


def _limb_joints(chain: list[int], heads, tails, lengths) -> tuple[list[int], list[int]]:
    """([the limb's first bone, the bone it bends at], the bones after the limb) for a limb
    chain: the longest pair of bones (_longest_pair), or two segments of up to two bones each
    where that is longer, each pair the two halves of one segment (_halves) and the segments
    alike in length: an upper arm, forearm or thigh split in two with no name saying it (Bone,
    Bone.001) bent the limb in the middle of its upper arm (QA)."""
    pair = _longest_pair(chain, heads, lengths)
    if not pair:
        return [], []
    seg = _segments(chain, heads, lengths)
    best, best_length = (chain.index(pair[0]), 1, 1), seg[chain.index(pair[0])] + seg[chain.index(pair[1])]
    for i in range(len(chain)):
        for upper in (1, 2):
            for lower in (1, 2):
                if i + upper + lower > len(chain) or upper + lower == 2:
                    continue
                groups = (chain[i:i + upper], chain[i + upper:i + upper + lower])
                if not all(len(g) == 1 or _halves(g[0], g[1], heads, tails, lengths) for g in groups):
                    continue
                a, b = seg[i:i + upper].sum(), seg[i + upper:i + upper + lower].sum()
                if max(a, b) <= SEGMENTS_LENGTH_RATIO * min(a, b) and a + b > best_length:
                    best, best_length = (i, upper, lower), a + b
    i, upper, lower = best
    return [chain[i], chain[i + upper]], chain[i + upper + lower:]


def _halves(a: int, b: int, heads, tails, lengths) -> bool:
    """Whether bones a and b (b a's child in a chain) are the two halves of one limb segment."""
    la, lb = float(lengths[a]), float(lengths[b])
    if min(la, lb) <= 0 or max(la, lb) > HALVES_LENGTH_RATIO * min(la, lb):
        return False
    if np.linalg.norm(heads[b] - tails[a]) > 0.02 * la:
        return False
    da, db = tails[a] - heads[a], tails[b] - heads[b]
    cos = float(np.dot(da, db) / (np.linalg.norm(da) * np.linalg.norm(db)))
    return cos >= np.cos(np.radians(HALVES_DEGREES))


def _longest_pair(chain: list[int], heads, lengths) -> list[int]:
    """The two consecutive bones of a limb chain that together are longest: thigh and shin,
    upper arm and forearm (a clavicle, a hip bone, a hand or a twist bone is shorter)."""
    if len(chain) < 2:
        return []
    seg = _segments(chain, heads, lengths)
    i = int(np.argmax(seg[:-1] + seg[1:]))
    return [chain[i], chain[i + 1]]
