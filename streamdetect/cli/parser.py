"""The argument parser: every verb, its flags and their help.

Every option has a help text, and every option with a default shows it (``tests/test_cli_help.py`` walks them
all). A mistyped option is reported with the usage of the verb it was given to, not the top-level one.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from streamdetect import __version__
from streamdetect.model.manifest import DEFAULT_MODEL_DIR, DEFAULT_MODEL_ID
from streamdetect.sinks.sqlite import SqliteOptions

DEFAULT_DB = Path(SqliteOptions().path)  # where a `sqlite` sink without `path` writes
MODEL_HELP = f"exported model directory (default: the config's `model`, else {DEFAULT_MODEL_DIR})"
CONFIG_HELP = "YAML config (see configs/ and the configuration reference)"


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends '(default: X)' where an option has a real default its help does not already state."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """Routes an unknown option to the usage of the verb it was given to (`run --file x.wav` shows run's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)
        self.verbs: dict[str, argparse.ArgumentParser] = {}

    # Any, as argparse's own overloads: a caller's namespace object comes back as itself
    def parse_args(self, args: Iterable[str] | None = None, namespace: Any = None) -> Any:
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            verb = self.verbs.get(getattr(parsed, "command", None) or "", self)
            verb.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (found {value})")
    return value


def build_parser() -> Parser:
    p = Parser(prog="streamdetect", description="Listen for sounds described in plain words.")
    p.add_argument("--version", action="version", version=f"streamdetect {__version__}",
                   help="print the version and exit")
    common = Parser(add_help=False)  # the verbs' own class: add_parser's parents are typed by it
    common.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="how much of streamdetect's own log to show")
    common.add_argument("--log-json", action="store_true", help="one JSON object per log line (for journald, Loki ...)")
    sub = p.add_subparsers(dest="command", required=True, metavar="VERB")

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, parents=[common], help=help_text, description=help_text,
                                formatter_class=DefaultsFormatter)
        p.verbs[name] = parser
        return parser

    e = verb("export", "turn a Hugging Face CLAP checkpoint into ONNX encoders + manifest")
    e.add_argument("--model", default=DEFAULT_MODEL_ID,
                   help="hub id, or a local checkpoint folder (config.json + model.safetensors) to export "
                        "without internet")
    e.add_argument("--out", type=Path, help=f"output directory (default: {DEFAULT_MODEL_DIR}, the folder the "
                   "ready-made configs read, for the default model and any local folder; models/<name> for "
                   "another hub id)")
    e.add_argument("--revision", help="hub revision (branch, tag or commit) to export (default: the newest)")
    e.add_argument("--force", action="store_true", help="replace an existing export in --out")
    e.add_argument("--random-weights", action="store_true",
                   help="no checkpoint: build laion/clap-htsat-unfused's architecture with RANDOM weights (kept in "
                        "<out>-random-checkpoint) and export that, to try the commands and time them; its scores "
                        "mean nothing and it never replaces an export of real weights. Not with --model/--revision")
    t = e.add_argument_group("Triton model repository (docs/triton.md); with an existing export in --out and no "
                             "--force, only the repository is written")
    t.add_argument("--triton-repo", type=Path, help="also write DIR/<name>/config.pbtxt and DIR/<name>/1/model.onnx")
    t.add_argument("--triton-name", default="streamdetect_audio", help="model name (default streamdetect_audio)")
    t.add_argument("--triton-kind", choices=["gpu", "cpu"], default="gpu", help="instance_group kind (default gpu)")
    t.add_argument("--triton-precision", choices=["auto", "fp32", "fp16"], default="auto",
                   help="auto: fp16 on a GPU where the export verified it, else fp32 (default auto)")
    t.add_argument("--triton-max-batch", type=int, default=64, help="max_batch_size (default 64)")
    t.add_argument("--triton-preferred", default="8,16,32", help="preferred batch sizes (default 8,16,32)")
    t.add_argument("--triton-delay-us", type=int, default=5000,
                   help="dynamic batcher's max_queue_delay_microseconds (default 5000)")
    t.add_argument("--triton-instances", type=int, default=1, help="instance_group count (default 1)")
    t.add_argument("--triton-backend", choices=["onnxruntime", "python"], default="onnxruntime",
                   help="python: a model.py running onnxruntime, for a tritonserver without the onnxruntime "
                        "backend (default onnxruntime)")

    r = verb("run", "detect the configured events in a file or a live input")
    r.add_argument("--config", required=True, type=Path, help=CONFIG_HELP)
    src = r.add_mutually_exclusive_group()
    src.add_argument("--input", type=Path, help="audio file to analyse as fast as possible, then exit "
                     "(default: the config's `sources`)")
    src.add_argument("--device", help="input device index or name substring ('default' for the default input; "
                     "`streamdetect devices` lists them)")
    r.add_argument("--model", type=Path, help=MODEL_HELP)

    pr = verb("prompts", "embed (and cache) a config's prompts and show how they relate")
    pr.add_argument("--config", required=True, type=Path, help=CONFIG_HELP)
    pr.add_argument("--model", type=Path, help=MODEL_HELP)

    sc = verb("scan", "similarity of every window to every event, as CSV and plot")
    sc.add_argument("file", type=Path, help="recording to scan")
    sc.add_argument("--config", required=True, type=Path, help=CONFIG_HELP)
    sc.add_argument("--model", type=Path, help=MODEL_HELP)
    sc.add_argument("--plot", type=Path, help="write the waveform / mel / similarity plot here (PNG; needs the "
                    "`plot` extra)")
    sc.add_argument("--csv", type=Path, help="write time x event scores here")
    sc.add_argument("--title", help="plot title (default: the file name)")

    tg = verb("tag", "zero-shot tags for whole clips (a file or a folder)")
    tg.add_argument("target", type=Path, help="audio file or folder")
    labels = tg.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", nargs="+", help="candidate labels, e.g. --labels dog rain 'glass breaking'")
    labels.add_argument("--config", type=Path, help="use the events (and their prompts) of a config")
    tg.add_argument("--template", default="This is a sound of {}.", help="prompt for each --labels entry")
    tg.add_argument("--top", type=positive_int, default=3, help="tags shown per file")
    tg.add_argument("--json", action="store_true", help="one JSON object per file instead of a table")
    tg.add_argument("--model", type=Path, help=MODEL_HELP)

    ev = verb("evaluate", "event-based P/R/F1 and PSDS1/PSDS2 of the streaming pipeline against strong labels")
    ev.add_argument("--config", required=True, type=Path, help=CONFIG_HELP)
    ev.add_argument("--audio", required=True, type=Path, help="folder of recordings (or one file)")
    ev.add_argument("--labels", required=True, type=Path, help="DCASE TSV: filename onset offset event_label")
    ev.add_argument("--collar", type=float, default=1.0,
                    help="onset collar in seconds (> 0), and the least offset collar (DCASE: 0.2)")
    ev.add_argument("--offset-collar-rate", type=float, default=0.0,
                    help="offset collar = max(collar, RATE x the reference event's length) (DCASE: 0.2)")
    ev.add_argument("--merge-touching", action="store_true",
                    help="merge touching or overlapping reference events of one label (without it they are kept "
                    "apart, as sed_eval and psds_eval count them)")
    ev.add_argument("--timing", choices=("reported", "centre", "presence"), default="reported",
                    help="reported: the events as the sinks report them (first window's start to last window's "
                    "end); centre: each window stands for the hop nearest its centre, as in PSDS; presence: the "
                    "sound began within the hop before the first window's end and ended within the hop after the "
                    "last window's start (CLAP fires on a sound anywhere in a window)")
    ev.add_argument("--scores-dir", type=Path,
                    help="also write the window scores (sed_scores_eval TSVs) and durations.tsv here")
    ev.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    ev.add_argument("--model", type=Path, help=MODEL_HELP)

    ca = verb("calibrate", "pick each event's threshold from positive and negative recordings")
    ca.add_argument("--config", required=True, type=Path, help=CONFIG_HELP)
    ca.add_argument("--positives", required=True, type=Path,
                    help="folder with one sub-folder per event label (or a TSV list: path<TAB>label)")
    ca.add_argument("--negatives", required=True, type=Path, help="folder of audio containing none of the events")
    target = ca.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-precision", type=float, help="precision to reach, in (0, 1], e.g. 0.9")
    target.add_argument("--max-false-alarms-per-hour", type=float,
                        help="false alarms per hour of negative audio to stay under, e.g. 1")
    where = ca.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help="new config (default: <config>.calibrated.yaml; never overwritten)")
    where.add_argument("--in-place", action="store_true", help="rewrite --config itself (comments are kept)")
    ca.add_argument("--model", type=Path, help=MODEL_HELP)

    ix = verb("index", "embed a folder of audio for `search` (incremental)")
    ix.add_argument("folder", type=Path, help="folder of recordings; the index goes into FOLDER/.streamdetect/")
    ix.add_argument("--window-s", type=float, default=3.0, help="window length in seconds")
    ix.add_argument("--hop-s", type=float, default=1.0, help="seconds between window starts")
    ix.add_argument("--model", type=Path, help=f"exported model directory (default: {DEFAULT_MODEL_DIR})")

    se = verb("search", "rank indexed files for a text query or an example")
    se.add_argument("query", nargs="?", help='what to look for, e.g. "a chainsaw"')
    se.add_argument("--like", type=Path, help="an example recording instead of a text query")
    se.add_argument("--dir", type=Path, default=Path("."), help="the indexed folder (default: here)")
    se.add_argument("--log", type=Path, help="search the `embedding_log` directory of a running detector instead")
    se.add_argument("--since", help="with --log: ISO-8601 time or an age: 7d, 12h, 30m (default: no limit)")
    se.add_argument("--until", help="with --log: ISO-8601 time or an age (default: now)")
    se.add_argument("--drop", type=float, default=0.5,
                    help="with --log: a stretch grows over neighbouring windows scoring above "
                         "best - DROP x (best - median score); 0..1")
    se.add_argument("--top", type=positive_int, default=10, help="results shown")
    se.add_argument("--window-s", type=float, default=3.0, help="window length the index was built with")
    se.add_argument("--hop-s", type=float, default=1.0, help="hop the index was built with")
    se.add_argument("--json", action="store_true", help="one JSON object per result instead of a table")
    se.add_argument("--model", type=Path, help=f"exported model directory (default: {DEFAULT_MODEL_DIR})")

    es = verb("events", "list records stored by a `sqlite` sink, newest first, with their ids")
    es.add_argument("--db", type=Path, default=DEFAULT_DB, help="the `path` of the config's sqlite sink")
    es.add_argument("--label", help="only this event label (default: all)")
    es.add_argument("--since", help="ISO-8601 time or an age: 7d, 12h, 30m (default: no limit)")
    es.add_argument("--until", help="ISO-8601 time or an age (default: now)")
    es.add_argument("--limit", type=positive_int, help="show only the newest N records (default: all)")
    es.add_argument("--csv", action="store_true", help="CSV instead of a table")

    fb = verb("feedback", "mark a stored event as right or wrong (for `refine`)")
    fb.add_argument("--db", type=Path, default=DEFAULT_DB, help="the `path` of the config's sqlite sink")
    fb.add_argument("--event", required=True, help="event id (or a unique prefix) from `streamdetect events`")
    verdict = fb.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--confirm", action="store_true", help="the event was right")
    verdict.add_argument("--reject", action="store_true", help="the event was wrong")

    rf = verb("refine", "move event prompt embeddings toward confirmed and away from rejected events")
    rf.add_argument("--config", required=True, type=Path, help=CONFIG_HELP)
    rf.add_argument("--db", type=Path, default=DEFAULT_DB, help="the `path` of the config's sqlite sink")
    rf.add_argument("--alpha", type=float, default=0.5, help="weight of the confirmed mean (0..1)")
    rf.add_argument("--beta", type=float, default=0.25, help="weight of the rejected mean (0..1)")
    rf.add_argument("--max-angle", type=float, default=20.0, help="degrees the embedding may move at most")
    rf.add_argument("--undo", metavar="LABEL", help="retire the newest refinement of LABEL instead")
    rf.add_argument("--clips", type=Path, help="folder of a `clips` sink: marked events with a saved clip are "
                    "embedded from it (whole event, current model) instead of the stored peak embedding")
    rf.add_argument("--model", type=Path, help=MODEL_HELP)

    rp = verb("report", "a day's summary from the event store: events per label, first and last heard, the best "
              "clip, an hourly chart")
    rp.add_argument("--day", help="YYYY-MM-DD, a local calendar day (default: yesterday)")
    rp.add_argument("--config", type=Path, help="take the event store, clips folder and site.timezone from it")
    rp.add_argument("--db", type=Path, help=f"event database (default: the config's, else {DEFAULT_DB})")
    rp.add_argument("--clips", type=Path, help="folder of a clips sink, for the best clip per label")
    rp.add_argument("--timezone", help="IANA time zone of the day (default: the config's site.timezone, else UTC)")
    rp.add_argument("--chart", type=Path, help="hourly chart PNG (default: report-DAY.png here)")
    rp.add_argument("--no-chart", action="store_true", help="write no chart")
    rp.add_argument("--json", action="store_true", help="JSON instead of text")

    dv = verb("devices", "which engine and precision the encoder runs on here (timed once per CPU), and the audio "
              "input devices")
    dv.add_argument("--config", type=Path, help=CONFIG_HELP + "; its runtime section and model are the ones shown")
    dv.add_argument("--model", type=Path, help=MODEL_HELP)
    dv.add_argument("--retime", action="store_true", help="time the engines again (say after the machine was busy "
                    "when they were first timed) and cache the new choice")
    return p
