"""Which scene's sequencer plays the song, and on which of the dancer's frames.

Blender 5.0 gives each workspace a Sequencer Scene: the Video Sequencer shows, edits and plays
that scene's strips, and it need not be the scene the dancer is in (the window's scene). A song
dropped into the sequencer then lies in the sequencer scene, and the dancer's scene is seen and
heard with it through a scene strip there (the manual's set-up: an edit scene holding the song
and a scene strip of each shot, with Sync Scene Time). Such a strip shows the dancer's frame
`scene.frame_start + animation_offset_start + (F - strip.frame_start)` on the edit's frame F,
so the song's frames map onto the dancer's by one shift. In Blender 4.x (no sequencer scene),
or where the dancer's own scene has the song, the song is the dancer's scene's, unshifted.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import blender_compat as compat
from . import scene_io
from engine.errors import EngineError


@dataclass(frozen=True)
class SongScene:
    """The scene whose sequencer holds the song, and how its frames meet the dancer's."""
    scene: object                         # where the sound strips are read
    shift: int = 0                        # dancer's frame = song scene's frame + shift
    shown: tuple[int, int] | None = None  # song scene's frames [first, end) that show the dancer; None: all
    through: str = ""                     # the scene strip(s) that show the dancer's scene, named

    @property
    def is_elsewhere(self) -> bool:
        return bool(self.through)

    def onto_dancer_frames(self, span):
        """A scene_io.AudioSpan in the song scene's frames -> the part of it heard while the
        dancer's scene is shown, in the dancer's frames."""
        if self.shown is None:
            return span
        first = max(span.first_frame, self.shown[0])
        end = min(span.first_frame + span.num_frames, self.shown[1])
        if end <= first:
            raise EngineError(f"in the sequencer scene '{self.scene.name}' the song plays on frames "
                              f"{span.first_frame}-{span.first_frame + span.num_frames - 1} and {self.through} "
                              f"on frames {self.shown[0]}-{self.shown[1] - 1}: they never meet, so nothing dances")
        fps = scene_io.scene_fps(self.scene)
        cut = first - span.first_frame
        volumes = None if span.volumes is None else span.volumes[cut:end - span.first_frame]
        return span._replace(start=span.start + cut / fps * span.speed, duration=(end - first) / fps,
                             first_frame=first + self.shift, num_frames=end - first, volumes=volumes)


def where_the_song_plays(scene, sequencer_scene, strip_name: str = "") -> SongScene:
    """The dancer's `scene` itself, unless no sound strip of it is heard (a muted scratch track
    does not count; QA: it hid the song) and the Video Sequencer's scene (`sequencer_scene`,
    Blender 5.0; None before) is another one where one is: then that scene, through its scene
    strips that show `scene`. A strip picked by name (`strip_name`) in `scene` keeps `scene`.
    EngineError (one line, what to do) where those strips do not show it, disagree on its
    timing, or play it at another frame rate or speed."""
    if sequencer_scene is None or sequencer_scene == scene or scene_io.heard_sound_strips(scene) \
            or not scene_io.heard_sound_strips(sequencer_scene) \
            or (strip_name and any(s.name == strip_name for s in compat.all_strips(scene))):
        return SongScene(scene)
    where = f"the song is in the Video Sequencer's scene '{sequencer_scene.name}'"
    showing = _showing(scene, sequencer_scene)
    if not showing:
        raise EngineError(f"{where}, not in '{scene.name}' where the dancer is, and no scene strip there shows "
                          f"'{scene.name}': add one (Add > Scene > {scene.name}) to dance to the song as it plays "
                          f"there, or pick '{scene.name}' as the sequencer's scene and add the song to it")
    names = ", ".join(f"'{s.name}'" for s in showing[:3]) + (", ..." if len(showing) > 3 else "")
    through = f"the scene strip{'s' if len(showing) > 1 else ''} {names}"
    shifts = {scene.frame_start + int(s.animation_offset_start) - int(s.frame_start) for s in showing}
    if len(shifts) > 1:
        raise EngineError(f"{where}, and {through} show '{scene.name}' with different timings: the dance can "
                          "follow one; mute all but one of them, or add the song to "
                          f"'{scene.name}' itself")
    retimed = [s.name for s in showing if compat.retiming_frames(s)]
    if retimed:
        raise EngineError(f"{where}, and the scene strip '{retimed[0]}' that shows '{scene.name}' is retimed: "
                          "the dance cannot follow a retimed scene; reset its retiming (Strip > Retiming > Reset)")
    ours, theirs = scene_io.scene_fps(scene), scene_io.scene_fps(sequencer_scene)
    if abs(ours - theirs) > 1e-6:
        raise EngineError(f"{where}, which runs at {theirs:.5g} fps, and '{scene.name}' at {ours:.5g}: set both "
                          "to the same frame rate (Output Properties > Format)")
    ranges = [compat.strip_range(s) for s in showing]
    return SongScene(sequencer_scene, shifts.pop(), (min(a for a, _ in ranges), max(b for _, b in ranges)), through)


def _showing(scene, sequencer_scene) -> list:
    """The scene strips of `sequencer_scene` that show `scene` (not muted)."""
    return [s for s in compat.all_strips(sequencer_scene)
            if s.type == 'SCENE' and s.scene == scene and not compat.strip_muted(sequencer_scene, s)]


def other_song_note(scene, sequencer_scene, danced) -> str | None:
    """A note where the dancer's scene has its own song (`danced`) while the Video Sequencer's
    scene also plays one with it (QA: a scratch track danced, the edit's song unsaid)."""
    if sequencer_scene is None or sequencer_scene == scene or not _showing(scene, sequencer_scene):
        return None
    songs = scene_io.heard_sound_strips(sequencer_scene)
    if not songs:
        return None
    return (f"the Video Sequencer's scene '{sequencer_scene.name}' also plays '{songs[0].name}' with this scene: the "
            f"dance follows '{danced.name}' of '{scene.name}'; mute '{danced.name}' to dance to '{songs[0].name}'")

