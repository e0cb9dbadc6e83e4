"""MedleyDB (Bittner et al. 2014): multitrack recordings with melody and per-stem pitch.

Layout, as the ``medleydb`` package and the MedleyDB download define it::

    <root>/Audio/<track>/<track>_MIX.wav
    <root>/Audio/<track>/<track>_STEMS/<track>_STEM_NN.wav
    <root>/Audio/<track>/<track>_RAW/<track>_RAW_NN_MM.wav         (not read)
    <root>/Audio/<track>/<track>_METADATA.yaml
    <annotations_root>/Metadata/<track>_METADATA.yaml              (read if the above is absent)
    <annotations_root>/Annotations/Melody/Melody{1,2,3}/<track>_MELODY{1,2,3}.csv
    <annotations_root>/Annotations/Pitch/<track>_STEM_NN.csv       (manual, voiced frames only)
    <annotations_root>/Annotations/Pitch_Pyin/<track>_STEM_NN_vamp_pyin_pyin_smoothedpitchtrack.csv
    <annotations_root>/Annotations/Activation_Confidence/{v2,original}/<track>_ACTIVATION_CONF.lab

The first layout is the ``medleydb`` package's data folder; the MedleyDB 1.x download keeps
the same files under ``Annotations/Melody_Annotations/MELODY{n}/``,
``Annotations/Pitch_Annotations/`` and ``Annotations/Instrument_Activations/ACTIVATION_CONF/``,
which are read too. Each annotation is looked up under `annotations_root` first, then `root`.

Conventions:
    * All annotations share the MedleyDB grid: hop 256 samples at 44.1 kHz (5.8 ms), frame k
      at k * 256 / 44100 s; per-stem pitch files list voiced frames only and are put on this
      grid (frames with no annotated sample within half a hop are unvoiced, 0 Hz).
    * ``f0["melody"]``: MELODY2 by default (every melodic source), or MELODY1 (the single
      dominant source); MELODY3 holds several simultaneous voices and is not a melody.
    * ``f0["bass"]``: manual pitch of stems whose metadata ``component`` is ``bass`` or whose
      instrument is a bass (``electric bass``, ``double bass``); several: the lowest per frame.
    * ``f0["vocal"]``: manual pitch of vocal stems; several: per frame, the voiced one with the
      highest activation confidence (the first in stem order without activations).
    * ``multif0``: union of all stems' manual pitch annotations. Only stems that have one
      contribute (``meta["multif0_stems"]``); unannotated pitched stems make it incomplete.
    * pYIN estimates are automatic, not ground truth: they are used only with
      ``pyin_fallback=True`` (for stems without a manual file), gated by activation
      confidence >= 0.5 when available, and named in ``meta["f0_sources"]``.
    * Stems: ``stem_NN`` for each metadata stem, plus ``vocals`` (sum of vocal stems) and
      ``accompaniment`` (sum of all other stems) when the track has a vocal stem;
      instrumental tracks have neither key. MedleyDB metadata holds no mixing gains and the
      released MIX is, up to mastering, the plain sum of its stems (MusicDelta_Reggae:
      residual about -42 dB), so ``vocals + accompaniment`` is the plain stem sum and ``audio``
      stays the released MIX; ``meta["stem_sum_residual_db"]`` reports their difference.
    * Splits: by default the artist-conditional train/validation/test split of Bittner et al.
      2017 (deepsalience ``data_splits.json``: 184/28/28 tracks); tracks on disk that it does
      not list are in no split. `split_file` replaces it; `artist_conditional_split` builds
      a new one.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mir.audio import audio_info, fit_length, load_audio
from mir.data.annotations import (
    lowest_voice,
    read_f0_csv,
    read_numeric_table,
    read_split_file,
    resample_f0,
    select_voice,
)
from mir.data.base import SPLITS, Dataset, Splits, dataset_root
from mir.data.track import Track
from mir.errors import ConfigError, DatasetError

ANNOTATION_HOP_S = 256 / 44100
"""Hop of every MedleyDB time series (melody, pitch), in seconds."""

STEM_LENGTH_TOLERANCE = 8
"""Largest stem/mix length difference accepted, in samples at the file rate."""

VOCAL_LABELS = frozenset(
    {
        "male singer", "female singer", "male speaker", "female speaker", "male rapper",
        "female rapper", "beatboxing", "vocalists", "choir", "male choir", "female choir",
    }
)  # fmt: skip
BASS_LABELS = frozenset({"electric bass", "double bass"})
MELODY_VERSIONS = ("melody1", "melody2")
PYIN_GATE = 0.5  # activation confidence above which a pYIN estimate counts as active

_MELODY_DIRS = ("Annotations/Melody/Melody{n}", "Annotations/Melody_Annotations/MELODY{n}")
_PITCH_DIRS = ("Annotations/Pitch", "Annotations/Pitch_Annotations")
_PYIN_DIRS = ("Annotations/Pitch_Pyin", "Annotations/Pitch_Annotations_Pyin")
_ACTIVATION_DIRS = (
    "Annotations/Activation_Confidence/v2",
    "Annotations/Activation_Confidence/original",
    "Annotations/Activation_Confidence",
    "Annotations/Instrument_Activations/ACTIVATION_CONF",
)
_PYIN_SUFFIX = "_vamp_pyin_pyin_smoothedpitchtrack.csv"

# Bittner, McFee, Salamon, Li & Bello (2017), "Deep salience representations for f0
# estimation in polyphonic music": data_splits.json of github.com/rabitt/ismir2017-deepsalience
# ("validate" renamed "validation"). Artist-conditional by the medleydb package's artist
# index, in which each MusicDelta piece has its own artist and Mozart_* are two singers.
# fmt: off
OFFICIAL_SPLIT: dict[str, tuple[str, ...]] = {
    "train": (
        "AimeeNorwich_Child", "AimeeNorwich_Flying", "AlexanderRoss_GoodbyeBolero",
        "AlexanderRoss_VelvetCurtain", "AmarLal_Rest", "AmarLal_SpringDay1", "AvaLuna_Waterduct",
        "BigTroubles_Phantom", "ClaraBerryAndWooldog_AirTraffic", "ClaraBerryAndWooldog_Boys",
        "ClaraBerryAndWooldog_Stella", "ClaraBerryAndWooldog_TheBadGuys",
        "ClaraBerryAndWooldog_WaltzForMyVictims", "CroqueMadame_Oil", "CroqueMadame_Pilot",
        "DreamersOfTheGhetto_HeavyLove", "EthanHein_1930sSynthAndUprightBass",
        "EthanHein_BluesForNofi", "EthanHein_GirlOnABridge", "FacesOnFilm_WaitingForGa",
        "FamilyBand_Again", "Handel_TornamiAVagheggiar", "HeladoNegro_MitadDelMundo",
        "HopAlong_SisterCities", "InvisibleFamiliars_DisturbingWildlife", "JoelHelander_Definition",
        "JoelHelander_ExcessiveResistancetoChange", "JoelHelander_IntheAtticBedroom",
        "KarimDouaidy_Hopscotch", "KarimDouaidy_Yatora", "LizNelson_Coldwar",
        "LizNelson_ImComingHome", "LizNelson_Rainfall", "Lushlife_ToynbeeSuite", "Meaxic_TakeAStep",
        "Meaxic_YouListen", "MichaelKropf_AllGoodThings", "Mozart_BesterJungling",
        "MusicDelta_80sRock", "MusicDelta_Beatles", "MusicDelta_Beethoven", "MusicDelta_Britpop",
        "MusicDelta_ChineseChaoZhou", "MusicDelta_ChineseDrama", "MusicDelta_ChineseHenan",
        "MusicDelta_ChineseJiangNan", "MusicDelta_ChineseXinJing", "MusicDelta_ChineseYaoZu",
        "MusicDelta_CoolJazz", "MusicDelta_Country1", "MusicDelta_Country2", "MusicDelta_Disco",
        "MusicDelta_FreeJazz", "MusicDelta_FunkJazz", "MusicDelta_Grunge", "MusicDelta_Hendrix",
        "MusicDelta_InTheHalloftheMountainKing", "MusicDelta_Punk", "MusicDelta_Reggae",
        "MusicDelta_Rockabilly", "MusicDelta_Shadows", "MusicDelta_SpeedMetal",
        "MusicDelta_Vivaldi", "MusicDelta_Zeppelin", "NightPanther_Fire", "PurlingHiss_Lolita",
        "Schumann_Mignon", "Snowmine_Curfews", "StevenClark_Bounty",
        "TablaBreakbeatScience_Animoog", "TablaBreakbeatScience_CaptainSky",
        "TablaBreakbeatScience_PhaseTransition", "TablaBreakbeatScience_WhoIsIt",
        "TheDistricts_Vermont", "TheScarletBrand_LesFleursDuMal", "TheSoSoGlos_Emergency",
        "Wolf_DieBekherte", "CassandraJenkins_PerfectDay", "CatMartino_IPromise",
        "Cayetana_MissThing", "DeadMilkmen_PrisonersCinema", "FilthyBird_IdLikeToKnow",
        "FruitCathedral_KeepMeRunnin", "LittleTybee_TheAlchemist", "MidnightBlue_HuntingSeason",
        "MidnightBlue_StarsAreScreaming", "MutualBenefit_NotForNothing", "PatternIsMovement_SaveMe",
        "PeterMatthewBauer_YouAlwaysLookForSomeoneLost", "SlowGhost_FirstSnow",
        "SlowGhost_MidnightGroove", "SlowGhost_Peanut", "SlowGhost_YoureAMystery",
        "TheFranckDuo_FranckViolinSonataInAMajorMovement1", "TheKitchenettes_Alive",
        "TheTonTons_Lush", "Torres_NewSkin", "AHa_TakeOnMe", "AcDc_BackInBlack",
        "Adele_SomeoneLikeYou", "Aerosmith_LoveInAnElevator", "AlanisMorissette_YouOughtaKnow",
        "AllThatRemains_Chiron", "AnEndlessSporadic_Anything", "Anberlin_TheFeelGoodDrag",
        "ArcadeFire_BlackMirror", "ArcticMonkeys_Brainstorm", "BillySquier_TheStroke",
        "BlackEyedPeas_IGottaFeeling", "BlackSabbath_WarPigs", "Blondie_OneWayOrAnother",
        "BlueOysterCult_DontFearTheReaper", "BobSeger_OldTimeRockAndRoll",
        "Boston_MoreThanAFeeling", "BrooksDunn_HillbillyDeluxe", "BrunoMars_Grenade",
        "BrunoMars_JustTheWayYouAre", "BrunoMars_MarryYou", "BryanAdams_SummerOf69",
        "Bush_Machinehead", "CarrieUnderwood_HomeSweetHome", "CeeloGreen_ForgetYou",
        "CheapTrick_IWantYouToWantMe", "CherryPoppinDaddies_ZootSuitRiot", "ChrisBrown_Yeah",
        "ChristinaAguilera_GenieInABottle", "ColdWarKids_HangMeUpToDry", "Coldplay_InMyPlace",
        "Coldplay_Shiver", "CorinneBaileyRae_PutYourRecordsOn", "CountZero_Shake",
        "CountingCrows_AccidentallyInLove", "FlightOfTheConcords_BusinessTime",
        "FooFighters_AllMyLife", "Incubus_Drive", "Inxs_NeedYouTonight", "KaiserChiefs_Ruby",
        "Kansas_CarryOnMyWaywardSon", "KanyeWest_LoveLockdown", "KeithUrban_IToldYouSo",
        "KennyChesney_SheThinksMyTractorsSexy", "Kiss_RockAndRollAllNite", "Knack_MySharona",
        "Korn_FreakOnALeash", "LadyGagaFeaturingBeyonce_Telephone", "LadyGaga_BadRomance",
        "LadyGaga_BornThisWay", "LambOfGod_Requiem", "LennyKravitz_AreYouGonnaGoMyWay",
        "LilyAllen_NotFair", "LinkinPark_InTheEnd", "Lit_MyOwnWorstEnemy", "LosLobos_LaBamba",
        "Maroon5_ThisLove", "MartinaMcbride_ThisOnesForTheGirls",
        "MarvinGaye_IHeardItThroughTheGrapevine", "MarvinGaye_WhatsGoingOn",
        "McFrontalot_LivinOnTheCornerOfDudeAndCatastrophe", "MichaelJackson_BeatIt",
        "MightyMightyBosstones_WheredYouGo", "MileyCyrus_7Things", "MirandaCosgrove_HeadphonesOn",
        "Misfits_AstroZombies", "ModestMouse_FloatOn", "Muffs_KidsInAmerica", "Muse_Hysteria",
        "TPain_Bartender", "TearsForFears_EverybodyWantsToRuleTheWorld", "Tesla_ModernDayCowboy",
        "TheAllmanBrothersBand_RamblinMan", "TheBronx_FalseAlarm", "TheBronx_SixDaysAWeek",
        "TheKooks_Naive", "TheLastGoodnight_PicturesOfYou", "TheTurtles_HappyTogether",
        "ThinLizzy_TheBoysAreBackInTown", "ThirdEyeBlind_Jumper", "ThirdEyeBlind_NeverLetYouGo",
        "TomPetty_FreeFallin", "Tonic_IfYouCouldOnlySee", "VampireWeekend_Cousins",
        "VampireWeekend_Holiday", "VanillaIce_IceIceBaby", "VillagePeople_Ymca",
    ),
    "validation": (
        "BrandonWebster_DontHearAThing", "BrandonWebster_YesSirICanFly",
        "HezekiahJones_BorrowedHeart", "MusicDelta_BebopJazz", "MusicDelta_GriegTrolltog",
        "MusicDelta_LatinJazz", "MusicDelta_ModalJazz", "SecretMountains_HighHorse",
        "SweetLights_YouLetMeDown", "Plasma_GoodShout", "TrevorAndTheSoundwaves_AloneAndSad",
        "BillyIdol_WhiteWedding", "Blink182_AllTheSmallThings", "BradPaisley_MudOnTheTires",
        "CarlDouglas_KungFuFighting", "Chromeo_Tenderoni", "FleetwoodMac_Rhiannon",
        "KtTunstall_BlackHorseAndTheCherryTree", "KtTunstall_SuddenlyISee", "LaRoux_Bulletproof",
        "Live_IAlone", "LynyrdSkynyrd_FreeBird", "TalkingHeads_PsychoKiller",
        "TaylorSwift_LoveStory", "TaylorSwift_YouBelongWithMe",
        "TheAllAmericanRejects_DirtyLittleSecret", "TheKillers_SomebodyToldMe",
        "TomPettyAndTheHeartbreakers_IWontBackDown",
    ),
    "test": (
        "AClassicEducation_NightOwl", "Auctioneer_OurFutureFaces", "CelestialShore_DieForUs",
        "ChrisJacoby_BoothShotLincoln", "ChrisJacoby_PigsFoot", "Creepoid_OldTree",
        "Debussy_LenfantProdigue", "Grants_PunchDrunk", "MatthewEntwistle_DontYouEver",
        "MatthewEntwistle_FairerHopes", "MatthewEntwistle_ImpressionsOfSaturn",
        "MatthewEntwistle_Lontano", "MatthewEntwistle_TheArch", "MatthewEntwistle_TheFlaxenField",
        "Mozart_DiesBildnis", "MusicDelta_FusionJazz", "MusicDelta_Gospel", "MusicDelta_Pachelbel",
        "MusicDelta_SwingJazz", "Phoenix_BrokenPledgeChicagoReel", "Phoenix_ColliersDaughter",
        "Phoenix_ElzicsFarewell", "Phoenix_LarkOnTheStrandDrummondCastle", "Phoenix_ScotchMorris",
        "Phoenix_SeanCaughlinsTheScartaglen", "PortStWillow_StayEven", "Schubert_Erstarrung",
        "StrandOfOaks_Spacestation",
    ),
}
# fmt: on


class MedleyDB(Dataset):
    """MedleyDB loader (one track: mix, stems, melody and per-stem pitch).

    Args:
        root: dataset folder holding ``Audio/``; default the ``MEDLEYDB_PATH`` variable.
        sr: sample rate in Hz of the returned audio.
        annotations_root: folder holding ``Annotations/`` and ``Metadata/`` (the
            ``medleydb`` package's data folder); default `root`.
        melody: ``melody2`` (default) or ``melody1``, the annotation read as ``f0["melody"]``.
        split_file: JSON ``{"train": [...], "validation": [...], "test": [...]}`` replacing
            the default Bittner et al. 2017 split.
        tracks: restrict the dataset to these track ids.
        pyin_fallback: use pYIN estimates for stems without a manual pitch annotation.

    Raises:
        DatasetError: the root, its ``Audio/`` folder, the annotations root or a requested
            track is missing, or the split file is invalid.
        ConfigError: `melody` is not ``melody1`` or ``melody2``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        sr: int = 22050,
        annotations_root: str | os.PathLike[str] | None = None,
        melody: str = "melody2",
        split_file: str | os.PathLike[str] | None = None,
        tracks: Iterable[str] | str | None = None,
        pyin_fallback: bool = False,
    ) -> None:
        super().__init__(sr)
        self.root = dataset_root(root, "MEDLEYDB_PATH", "MedleyDB")
        self.audio_dir = self.root / "Audio"
        if not self.audio_dir.is_dir():
            raise DatasetError(
                f"MedleyDB: {self.audio_dir} does not exist (expected Audio/<track>/)"
            )
        if annotations_root in (None, ""):
            self.annotations_root = self.root
        else:
            self.annotations_root = Path(str(annotations_root)).expanduser()
            if not self.annotations_root.is_dir():
                raise DatasetError(
                    f"MedleyDB: annotations path {self.annotations_root} does not exist"
                )
        melody = str(melody).lower()
        if melody not in MELODY_VERSIONS:
            raise ConfigError(
                f"MedleyDB: melody must be melody1 or melody2, not {melody!r} "
                "(melody3 holds several voices at once)"
            )
        self.melody = melody
        self.pyin_fallback = bool(pyin_fallback)
        on_disk = sorted(p.name for p in self.audio_dir.iterdir() if p.is_dir())
        if tracks is not None:
            wanted = [tracks] if isinstance(tracks, str) else [str(t) for t in tracks]
            missing = sorted(set(wanted) - set(on_disk))
            if missing:
                raise DatasetError(
                    f"MedleyDB: track(s) {', '.join(missing)} not found in {self.audio_dir}"
                )
            on_disk = sorted(set(wanted))
        self._ids = on_disk
        if split_file in (None, ""):
            self._splits = Splits(OFFICIAL_SPLIT)
            self.split_source = "bittner2017"
        else:
            self._splits = Splits(read_split_file(split_file))
            self.split_source = str(split_file)

    def __repr__(self) -> str:
        return f"MedleyDB(root={str(self.root)!r}, sr={self.sr}, melody={self.melody!r})"

    @property
    def all_track_ids(self) -> list[str]:
        """Every track found (after the `tracks` restriction), in any split or none."""
        return list(self._ids)

    def track_ids(self, split: str) -> list[str]:
        return self._splits.ids(split, present=set(self._ids))

    def split_of(self, track_id: str) -> str | None:
        """The split holding `track_id`, or None if the split lists it nowhere."""
        return self._splits.of(track_id)

    # ---- files -------------------------------------------------------------------------

    def _annotation_roots(self) -> list[Path]:
        roots = [self.annotations_root]
        if self.root != self.annotations_root:
            roots.append(self.root)
        return roots

    def _find(self, rel_dirs: Sequence[str], filename: str) -> Path | None:
        for base in self._annotation_roots():
            for rel in rel_dirs:
                path = base / rel / filename
                if path.is_file():
                    return path
        return None

    def metadata_path(self, track_id: str) -> Path:
        """The track's metadata YAML: beside its audio, else under ``Metadata/``."""
        candidates = [self.audio_dir / track_id / f"{track_id}_METADATA.yaml"]
        name = f"{track_id}_METADATA.yaml"
        candidates += [b / "Metadata" / name for b in self._annotation_roots()]
        for path in candidates:
            if path.is_file():
                return path
        raise DatasetError(
            f"MedleyDB: metadata for {track_id} not found (looked for "
            + ", ".join(str(c) for c in candidates)
            + ")"
        )

    def metadata(self, track_id: str) -> dict[str, Any]:
        """The parsed metadata YAML of one track.

        Raises:
            DatasetError: the file is missing, is not valid YAML, or has no ``stems`` mapping.
        """
        path = self.metadata_path(track_id)
        try:
            meta = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            detail = " ".join(str(exc).split())
            raise DatasetError(f"MedleyDB: cannot parse metadata {path} ({detail})") from None
        if not isinstance(meta, dict):
            raise DatasetError(f"MedleyDB: metadata {path} is not a YAML mapping")
        stems = meta.get("stems") or {}
        if not isinstance(stems, dict) or not all(isinstance(v, dict) for v in stems.values()):
            raise DatasetError(f"MedleyDB: metadata {path} has no valid 'stems' mapping")
        for key in stems:
            if _stem_index(key) is None:
                raise DatasetError(f"MedleyDB: metadata {path} has a stem key {key!r}, not SNN")
        return meta

    # ---- loading -----------------------------------------------------------------------

    def load(self, track_id: str) -> Track:
        folder = self.audio_dir / track_id
        if not folder.is_dir():
            raise DatasetError(f"MedleyDB: track {track_id!r} not found ({folder} does not exist)")
        meta = self.metadata(track_id)
        mix_path = folder / str(meta.get("mix_filename") or f"{track_id}_MIX.wav")
        mix_info = audio_info(mix_path)
        audio = load_audio(mix_path, self.sr)

        stem_meta = {f"stem_{_stem_index(k):02d}": v for k, v in sorted(meta["stems"].items())}
        instruments = {name: _labels(s.get("instrument")) for name, s in stem_meta.items()}
        vocal_stems = [n for n, labels in instruments.items() if labels & VOCAL_LABELS]
        bass_stems = [
            n
            for n, s in stem_meta.items()
            if str(s.get("component") or "").lower() == "bass" or instruments[n] & BASS_LABELS
        ]

        stems = self._load_stems(track_id, folder, meta, stem_meta, mix_info, len(audio))
        residual_db = None
        if stems is not None:
            total = np.stack([stems[n] for n in stem_meta]).sum(axis=0, dtype=np.float64)  # (N,)
            if vocal_stems:
                vocals = np.stack([stems[n] for n in vocal_stems]).sum(axis=0, dtype=np.float64)
                stems["vocals"] = np.asarray(vocals, dtype=np.float32)
                stems["accompaniment"] = np.asarray(total - vocals, dtype=np.float32)
            err = float(np.sum((audio - total) ** 2))
            ref = float(np.sum(audio.astype(np.float64) ** 2))
            residual_db = float(10 * np.log10(max(err, 1e-20) / max(ref, 1e-20)))

        # Annotation grid: 256-sample hop at 44.1 kHz over the whole mix.
        duration = mix_info.frames / mix_info.samplerate
        n_frames = int(np.floor(duration / ANNOTATION_HOP_S + 1e-9)) + 1
        grid = ANNOTATION_HOP_S * np.arange(n_frames)
        activation = self._activation(track_id, grid)
        pitch, sources = self._stem_pitch(track_id, stem_meta, grid, activation)

        f0: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        n = self.melody[-1]
        melody_path = self._find([d.format(n=n) for d in _MELODY_DIRS], f"{track_id}_MELODY{n}.csv")
        if melody_path is not None:
            f0["melody"] = read_f0_csv(melody_path)
        bass = [b for b in bass_stems if b in pitch]
        if bass:
            f0["bass"] = (grid, lowest_voice([pitch[b] for b in bass]))
        vocal = [v for v in vocal_stems if v in pitch]
        if vocal:
            prio = None
            if activation is not None and all(v in activation for v in vocal):
                prio = [activation[v] for v in vocal]
            f0["vocal"] = (grid, select_voice([pitch[v] for v in vocal], prio))
        multif0 = None
        if pitch:
            stacked = np.stack([pitch[s] for s in sorted(pitch)])  # (S, T)
            multif0 = (grid, [np.sort(col[col > 0]) for col in stacked.T])

        return Track(
            name=track_id,
            audio=audio,
            sr=self.sr,
            annotations={"stems": stems, **f0, "multif0": multif0},
            meta={
                "dataset": "medleydb",
                "artist": meta.get("artist"),
                "title": meta.get("title"),
                "genre": meta.get("genre"),
                "instrumental": str(meta.get("instrumental", "")).lower() == "yes"
                or not vocal_stems,
                "has_bleed": str(meta.get("has_bleed", "")).lower() == "yes",
                "split": self.split_of(track_id),
                "stem_instruments": {k: sorted(v) for k, v in instruments.items()},
                "vocal_stems": vocal_stems,
                "bass_stems": bass_stems,
                "multif0_stems": sorted(pitch),
                "f0_sources": {
                    "melody": str(melody_path) if melody_path else None,
                    "stem_pitch": sources,
                },
                "stem_sum_residual_db": residual_db,
                "path": str(folder),
            },
        )

    def _load_stems(
        self,
        track_id: str,
        folder: Path,
        meta: Mapping[str, Any],
        stem_meta: Mapping[str, Mapping[str, Any]],
        mix_info: Any,
        n_samples: int,
    ) -> dict[str, np.ndarray] | None:
        stem_dir = folder / str(meta.get("stem_dir") or f"{track_id}_STEMS")
        if not stem_meta or not stem_dir.is_dir():
            return None  # mix-only copy of the dataset
        stems: dict[str, np.ndarray] = {}
        for name, s in stem_meta.items():
            default = f"{track_id}_STEM_{name[-2:]}.wav"
            path = stem_dir / str(s.get("filename") or default)
            if not path.is_file():
                raise DatasetError(f"MedleyDB: stem {path} listed in the metadata does not exist")
            info = audio_info(path)
            if info.samplerate != mix_info.samplerate:
                raise DatasetError(
                    f"MedleyDB: stem {path} is at {info.samplerate} Hz but the mix is at "
                    f"{mix_info.samplerate} Hz"
                )
            if abs(info.frames - mix_info.frames) > STEM_LENGTH_TOLERANCE:
                raise DatasetError(
                    f"MedleyDB: stem {path} has {info.frames} samples but the mix has "
                    f"{mix_info.frames} (tolerance {STEM_LENGTH_TOLERANCE})"
                )
            stems[name] = fit_length(load_audio(path, self.sr), n_samples)
        return stems

    def _activation(self, track_id: str, grid: np.ndarray) -> dict[str, np.ndarray] | None:
        """Activation confidence per stem on the annotation grid, or None."""
        path = self._find(_ACTIVATION_DIRS, f"{track_id}_ACTIVATION_CONF.lab")
        if path is None:
            return None
        names, rows = read_numeric_table(path, min_columns=2, header=True)
        if names is None or not rows or names[0].lower() != "time":
            raise DatasetError(f"MedleyDB: {path} must start with a 'time,S01,...' header")
        if any(len(r) != len(names) for r in rows):
            raise DatasetError(f"MedleyDB: {path}: rows and header have different lengths")
        table = np.stack(rows)  # (T, 1 + S)
        out = {}
        for j, key in enumerate(names[1:], start=1):
            idx = _stem_index(key)
            if idx is None:
                raise DatasetError(f"MedleyDB: {path}: column {key!r} is not a stem (SNN)")
            out[f"stem_{idx:02d}"] = np.interp(grid, table[:, 0], table[:, j])
        return out

    def _stem_pitch(
        self,
        track_id: str,
        stem_meta: Mapping[str, Any],
        grid: np.ndarray,
        activation: Mapping[str, np.ndarray] | None,
    ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Per-stem f0 on the grid (Hz, 0 = unvoiced) and the file each came from."""
        pitch: dict[str, np.ndarray] = {}
        sources: dict[str, str] = {}
        for name in stem_meta:
            base = f"{track_id}_STEM_{name[-2:]}"
            path = self._find(_PITCH_DIRS, f"{base}.csv")
            gate = None
            if path is None and self.pyin_fallback:
                path = self._find(_PYIN_DIRS, base + _PYIN_SUFFIX)
                if path is not None and activation is not None and name in activation:
                    gate = activation[name] >= PYIN_GATE
            if path is None:
                continue
            f = resample_f0(*read_f0_csv(path), grid)
            if gate is not None:
                f = np.where(gate, f, 0.0)
            pitch[name] = f
            sources[name] = str(path)
        return pitch, sources


def artist_conditional_split(
    track_artists: Mapping[str, str],
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> dict[str, list[str]]:
    """A deterministic split in which all tracks of one artist fall in the same split.

    Artists are shuffled with `seed`, then filled greedily into train, validation and test
    until each holds its fraction of the tracks.

    Args:
        track_artists: track id -> artist name (e.g. metadata ``artist``, or the id prefix).
        fractions: target share of tracks for train, validation, test; must sum to 1.
        seed: seed of the artist shuffle.

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}``, each sorted; write it as
        JSON to use it as `MedleyDB`'s `split_file`.
    """
    if len(fractions) != len(SPLITS) or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be {len(SPLITS)} non-negative numbers summing to 1")
    by_artist: dict[str, list[str]] = {}
    for track, artist in track_artists.items():
        by_artist.setdefault(artist, []).append(track)
    artists = sorted(by_artist)
    random.Random(seed).shuffle(artists)
    total = len(track_artists)
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    for artist in artists:
        # The split furthest below its target share takes the next artist.
        deficit = [fractions[i] * total - len(splits[s]) for i, s in enumerate(SPLITS)]
        splits[SPLITS[int(np.argmax(deficit))]].extend(by_artist[artist])
    return {s: sorted(v) for s, v in splits.items()}


def _stem_index(key: object) -> int | None:
    """``S01`` (metadata, activation header) -> 1; anything else -> None."""
    text = str(key)
    if len(text) >= 2 and text[0] in "Ss" and text[1:].isdigit():
        return int(text[1:])
    return None


def _labels(instrument: object) -> set[str]:
    """Instrument labels of a stem (a string, or a list in MedleyDB 2 metadata), lower case."""
    if instrument is None:
        return set()
    items = instrument if isinstance(instrument, list | tuple) else [instrument]
    return {str(i).strip().lower() for i in items}
