"""The embedded default dataset: music21 corpus scores rendered through a General-MIDI SoundFont.

A fresh machine can train every task with no download: pieces from music21's bundled corpus
(Bach chorales first, with some Palestrina, Trecento and string-quartet movements) are given a
seeded tempo, transposition, instrumentation and drum part, rendered one part at a time with
`midirenderer` and the ``TimGM6mb.sf2`` SoundFont that ships inside `pretty_midi`, and cached
on disk. Everything is a function of (corpus path, seed, sr, hop, max_duration).

Conventions:
    * Parts are read top to bottom in score order and named by role: ``soprano`` (the top
      part, the melody), ``alto``, ``tenor`` (middle parts; a 3-part piece has no tenor) and
      ``bass`` (the lowest part). Pieces have 2 to 4 parts.
    * Stems: ``soprano``, ``alto``, ``tenor``, ``bass``, ``drums`` (silent where the piece has
      no such part), ``vocals`` (= ``soprano``, on a GM voice patch, or sung by the formant
      synthesiser of `mir.data.singing` with ``voice="formant"``) and
      ``accompaniment`` (= alto + tenor + bass + drums). The mix is exactly
      ``vocals + accompaniment``, float32, peak normalised to 0.9 with one gain for all stems.
    * f0: ``melody`` and ``vocal`` are the soprano's f0, ``bass`` the bass part's, on frames
      ``k * hop / sr`` s, in Hz (equal temperament, A4 = 440 Hz, transposition included),
      0 Hz where unvoiced. Within a part holding a chord, melody takes its top note and bass
      its bottom note. ``multif0`` lists every sounding pitched note per frame. With
      ``voice="formant"`` the soprano's f0 (in ``melody``, ``vocal`` and ``multif0``) is the
      pitch actually sung: vibrato and glides included.
    * Drum onsets: ``kick`` (GM 36), ``snare`` (38, ghost notes included) and ``hihat``
      (closed 42 and open 46), in s. About 20% of pieces have no drums: their onset arrays are
      empty, which is a real "no drums" label.
    * Beats and downbeats follow the score's (single) time signature and its measures, so a
      pickup bar has beats but no downbeat; tempo is in beats per minute of the metre's beat
      unit (a dotted quarter in 6/8).
    * Chords: majmin labels (``<root>:maj``, ``<root>:min``, ``N``; ``X`` for other
      sonorities) of every slice of the rendered notes, from music21's root and triad
      quality, transposition included (`chord_annotations`).
    * Tags come from `EMBEDDED_TAGS`: instrument families present, mode (music21's key
      analysis), tempo class and metre.
    * The ten Bach10 chorales, and the other settings of the same chorale tunes found in the
      corpus, are never used (`BACH10_TITLES`, `BACH10_BWV`, `BACH10_OTHER_SETTINGS`).

Modules, in the order a piece goes through them:
    * `corpus`: which scores, in which seeded order, in which split.
    * `annotate`: score to notes, beats, drums (in MIDI ticks), then to f0, onsets, chords
      and tags.
    * `synth`: `render_piece`, the rendering phases (tempo, transposition, crop,
      instruments, drums, stems, singer, gain) and the annotations record.
    * `cache`: the on-disk format (DONE marker, checksums) and how a piece is read back.
    * `dataset`: `EmbeddedDataset`, which renders what is missing and serves the pieces.
"""

from mir.data.embedded.annotate import (
    DRUM_CLASSES,
    EMBEDDED_TAGS,
    PITCH_CLASSES,
    PROGRAMS,
    ROLES,
    TPQ,
    Beat,
    Note,
    chord_annotations,
    chord_label,
    estimate_mode,
    has_drum_part,
)
from mir.data.embedded.cache import (
    MARKER,
    SKIPPED,
    CorruptPiece,
    default_root,
    piece_annotations,
    piece_signals,
    read_piece,
    rendered_samples,
    write_piece,
)
from mir.data.embedded.corpus import (
    BACH10_BWV,
    BACH10_OTHER_SETTINGS,
    BACH10_TITLES,
    SOURCES,
    Candidate,
    all_candidates,
    assign_splits,
    bwv_number,
    is_excluded,
    normalise_title,
    piece_order,
    piece_titles,
    track_id_of,
)
from mir.data.embedded.dataset import EmbeddedDataset, PieceReport
from mir.data.embedded.synth import (
    FORMAT_VERSION,
    STEMS,
    TEMPO_CLASSES,
    RenderedPiece,
    render_piece,
)

__all__ = [
    "BACH10_BWV",
    "BACH10_OTHER_SETTINGS",
    "BACH10_TITLES",
    "DRUM_CLASSES",
    "EMBEDDED_TAGS",
    "FORMAT_VERSION",
    "MARKER",
    "PITCH_CLASSES",
    "PROGRAMS",
    "ROLES",
    "SKIPPED",
    "SOURCES",
    "STEMS",
    "TEMPO_CLASSES",
    "TPQ",
    "Beat",
    "Candidate",
    "CorruptPiece",
    "EmbeddedDataset",
    "Note",
    "PieceReport",
    "RenderedPiece",
    "all_candidates",
    "assign_splits",
    "bwv_number",
    "chord_annotations",
    "chord_label",
    "default_root",
    "estimate_mode",
    "has_drum_part",
    "is_excluded",
    "normalise_title",
    "piece_annotations",
    "piece_order",
    "piece_signals",
    "piece_titles",
    "read_piece",
    "render_piece",
    "rendered_samples",
    "track_id_of",
    "write_piece",
]
