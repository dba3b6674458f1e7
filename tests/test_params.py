"""Issue 20: every params.yaml key checked at once before anything trains (glode/params.py), and
the check agrees with what the stages themselves accept (a hypothesis property test)."""

from __future__ import annotations

import copy
import math
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
import yaml
from dvc.parsing.interpolate import to_str
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glode.errors import ParamError
from glode.params import (DEFAULTS, REFERENCE_BEGIN, REFERENCE_END, SCHEMA, ParamsError, check_file, check_params,
                          reference_markdown)
from glode.rounds import MAX_ROUNDS, check_prev
from glode.stagecli import single_command
from tests.params_fixture import default_params, default_params_text, write_project
from tests.synthetic import write_corpus

ROOT = Path(__file__).resolve().parents[1]
# the schema defaults, generated: never the working tree's params.yaml, which may hold a user's
# `dvc exp run -S k=500` (issue 39)
COMMITTED = default_params()
DEFAULT_TEXT = default_params_text()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A project folder with a params.yaml of the schema defaults and tiny input files where it expects them."""
    return write_project(tmp_path_factory.mktemp("proj"))


def flat(params: dict) -> dict:
    return {f"{a}.{b}" if isinstance(v, dict) and a not in ("rounds", "models") else a: w
            for a, v in params.items() for b, w in (v.items() if isinstance(v, dict) and a not in ("rounds", "models") else [(None, v)])}


def mutate(params: dict, key: str, value) -> dict:
    p = copy.deepcopy(params)
    if "." in key:
        sec, sub = key.split(".", 1)
        p[sec][sub] = value
    else:
        p[key] = value
    return p


def with_rounds(params: dict, rounds) -> dict:
    """params with another rounds block and models derived from it as the YAML merge does."""
    p = copy.deepcopy(params)
    p["rounds"] = rounds
    p["models"] = {"r0": {"prev": "source"}, **(rounds if isinstance(rounds, dict) else {})}
    return p


def test_committed_params_are_valid_and_the_schema_defaults_equal_them(root):
    """The project's params.yaml holds the schema defaults: the committed one (git HEAD) or, while
    both are being changed, the working tree's. Either will do, so that a user's `dvc exp run -S
    k=500` in the workspace does not fail the test, nor a change not committed yet."""
    assert check_params(COMMITTED, root) == []
    versions = {"working tree": (ROOT / "params.yaml").read_text(encoding="utf-8")}
    head = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        versions["HEAD"] = head.stdout
    differ = {}
    for name, text in versions.items():
        params = yaml.safe_load(text)
        values = {k: v for k, v in flat(params).items() if k not in ("rounds", "models")}
        if values == DEFAULTS and check_params(params, root) == []:
            return
        differ[name] = {k: (values.get(k, "missing"), DEFAULTS.get(k, "unknown")) for k in sorted({*values, *DEFAULTS})
                        if values.get(k, "missing") != DEFAULTS.get(k, "unknown")}
    pytest.fail(f"no params.yaml of the project holds the schema defaults of glode/params.py: {differ}")


BAD = {
    # case: (key, value, text expected in the message)
    "k zero": ("k", 0, "k: 0 is not allowed; expected an integer >= 1"),
    "dim negative": ("denoise.dim", -1, "denoise.dim: -1 is not allowed; expected an integer >= 0"),
    "negative sentence cap": ("data.max-source-sentences", -5, "data.max-source-sentences: -5"),
    "empty label set": ("data.labels", [], "the entity label set is empty"),
    "O as a label": ("data.labels", ["O", "PER"], "not 'O'"),
    "label also ignored": ("data.ignore-labels", ["PER"], "data.ignore-labels: ['PER'] are also in data.labels"),
    "empty char languages": ("model.char-languages", [], "fall back to [zh]"),
    "choice": ("denoise.prototype", "median", "expected one of mean, ema"),
    "type": ("train.lr", "fast", "expected a number in (0, 1]"),
    "bool": ("denoise.use-local", "yes", "expected true or false"),
    "missing target files": ("target", "xx", "target: 'xx': file "),
    "missing source file": ("data.source-dev", "data/en/nope.txt", "data.source-dev: 'data/en/nope.txt': file"),
    "missing encoder folder": ("encoder.name", "./models/enc", "'./models/enc': no such folder (a path)"),
    "unknown key": ("denoise.dimm", 64, "denoise.dimm: unknown key (did you mean denoise.dim?)"),
    "section not a mapping": ("denoise", 5, "denoise: 5 is not allowed; expected a mapping of its keys (dim, "),
}


@pytest.mark.parametrize("case", list(BAD))
def test_each_bad_value_is_named_with_what_is_allowed(root, case):
    key, value, text = BAD[case]
    problems = check_params(mutate(COMMITTED, key, value), root)
    assert problems and all(p.startswith(key) and text in p for p in problems), problems


ROUNDS = {
    "cycle": ({"r1": {"prev": "r2"}, "r2": {"prev": "r1"}}, "rounds.r1.prev: 'r2' is defined later"),
    "self": ({"r1": {"prev": "r1"}}, "rounds.r1.prev: a round cannot build on itself"),
    "missing predecessor": ({"r1": {"prev": "r0"}, "r2": {"prev": "r5"}}, "rounds.r2.prev: 'r5' is not a round"),
    "too many": ({f"r{i}": {"prev": f"r{i - 1}"} for i in range(1, MAX_ROUNDS + 2)},
                 f"rounds.r{MAX_ROUNDS + 1}: at most {MAX_ROUNDS} rounds"),
    "no prev": ({"r1": {}}, "rounds.r1: needs a 'prev' entry"),
}


@pytest.mark.parametrize("case", list(ROUNDS))
def test_broken_round_chains_name_the_round(root, case):
    rounds, text = ROUNDS[case]
    problems = check_params(with_rounds(COMMITTED, rounds), root)
    assert len(problems) == 1 and problems[0].startswith(text), problems


def test_glode_check_names_the_key_of_a_cycle_dvc_refuses_without_naming_it(root):
    from typer.testing import CliRunner

    from glode.cli import app
    from glode.rounds import rewrite_rounds

    rewrite_rounds(root / "params.yaml", 2)
    ok = CliRunner().invoke(app, ["check", "--params", str(root / "params.yaml")])
    assert ok.exit_code == 0 and "every parameter is valid; 2 round(s)" in ok.output, ok.output
    text = (root / "params.yaml").read_text().replace("  r1: {prev: r0}", "  r1: {prev: r2}")
    (root / "cycle.yaml").write_text(text)
    bad = CliRunner().invoke(app, ["check", "--params", str(root / "cycle.yaml")])
    assert isinstance(bad.exception, ParamsError) and "rounds.r1.prev: 'r2' is defined later" in str(bad.exception)


def test_edited_models_line_is_reported(root):
    p = copy.deepcopy(COMMITTED)
    p["models"]["r9"] = {"prev": "r1"}
    assert check_params(p, root) == [next(x for x in check_params(p, root) if x.startswith("models: must be r0 plus every round"))]


def test_every_problem_is_reported_at_once(root):
    p = mutate(mutate(mutate(COMMITTED, "k", 0), "denoise.dim", -3), "train.epochs", 0)
    del p["denoise"]["seed"]
    (root / "bad.yaml").write_text(yaml.safe_dump(p))
    with pytest.raises(ParamsError) as err:
        check_file(root / "bad.yaml")
    msg = str(err.value)
    assert msg.startswith(f"{root / 'bad.yaml'}: 4 bad parameters:")
    for text in ("k: 0", "denoise.dim: -3", "train.epochs: 0", "denoise.seed: missing (default 0)"):
        assert text in msg, msg


def test_unreadable_params_file_is_one_error(tmp_path):
    (tmp_path / "p.yaml").write_text("k: [1,\n")
    with pytest.raises(Exception, match="not valid YAML"):
        check_file(tmp_path / "p.yaml")
    with pytest.raises(Exception, match="file not found"):
        check_file(tmp_path / "none.yaml")


def test_dvc_repro_with_a_bad_key_fails_in_the_check_stage(tmp_path):
    """A fresh copy with one bad parameter: `dvc repro` stops in its first stage, naming the key."""
    for name in ("dvc.yaml", "stages", "glode", ".dvc/config"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, tmp_path / name)
    for i, f in enumerate(("en/train.txt", "en/dev.txt", "de/train.txt", "de/test.txt")):
        write_corpus(tmp_path / "data" / f, 3, seed=i)
    (tmp_path / "params.yaml").write_text(DEFAULT_TEXT.replace("\nk: 300\n", "\nk: 0\n"))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(tmp_path),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=tmp_path, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "k: 0 is not allowed; expected an integer >= 1" in out, out
    assert "Running stage 'check'" in out and "Running stage 'prepare'" not in out, out
    assert not (tmp_path / "tables").exists() and not (tmp_path / "encoder").exists()
    assert elapsed < 30, f"dvc repro took {elapsed:.1f} s to fail"  # ~1.5 s on an idle machine


# ------------------------------------------------------------------ property: check == stages

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
DVC_CONFIG = {"bool": "boolean_optional", "list": "append"}  # .dvc/config [parsing]
_MODULES: dict[str, dict] = {}


def _stage(script: str) -> tuple[dict, object]:
    if script not in _MODULES:
        g = runpy.run_path(str(ROOT / script))
        _MODULES[script] = {"globals": g, "command": typer.main.get_command(single_command(g["main"]))}
    return _MODULES[script]["globals"], _MODULES[script]["command"]


class Refused(Exception):
    pass


def _lookup(ctx: dict, expr: str):
    value = ctx
    for part in expr.split("."):
        if not isinstance(value, dict) or part not in value:
            raise Refused(f"DVC cannot resolve ${{{expr}}}")
        value = value[part]
    return value


def _render(cmd: str, ctx: dict, used: set[str]) -> str:
    """A dvc.yaml command with every ${...} replaced as DVC does (its own to_str, the project's
    parsing config); records the params keys it used."""
    def sub(m):
        expr = m.group(1)
        value = _lookup(ctx, expr)
        used.update(f"{expr}.{k}" for k in value) if isinstance(value, dict) else used.add(expr)
        return to_str(value, DVC_CONFIG)
    return re.sub(r"\$\{([^}]+)\}", sub, cmd)


def _stage_own_checks(script: str, o: dict, params: dict, root: Path) -> None:
    """What each stage checks beyond its options' schema, before reading its inputs."""
    from glode.settings import DataSettings, DenoiseSettings, EvaluateSettings, ModelSettings, RetrainSettings, TrainSettings
    from glode.steps.denoise import ema_weight

    rounds = params["rounds"] if isinstance(params["rounds"], dict) else {}
    if script == "stages/prepare.py":
        DataSettings.from_options(o)
        for name in ("source_train", "source_dev", "target_unlabelled", "target_test"):
            if not (root / o[name]).is_file():
                raise Refused(f"{o[name]} not found")
    elif script == "stages/train_source.py":
        ModelSettings.from_options(o)
        TrainSettings.from_options(o)
    elif script == "stages/train_target.py":
        TrainSettings.from_options(o)
        RetrainSettings.from_options(o)
    elif script == "stages/pseudo_label.py":
        DenoiseSettings.from_options(o)
        EvaluateSettings.from_options(o)
        check_prev(o["round"], o["prev"])
        if o["prev"] != "r0" and o["prev"] not in rounds:
            raise Refused(f"models/{o['prev']} is made by no stage")
    elif script == "stages/denoise.py":
        settings = DenoiseSettings.from_options(o)
        ema_weight(o["round"], settings.m_start, settings.m_step, settings.m_min, settings.update_from)


def stages_accept(params: dict, root: Path) -> bool:
    """Whether DVC can build every stage's command and every stage accepts its options as the
    params file has them: parsed by the stage's own click command, equal to the file's values
    (DVC drops an empty list, and the stage would then use its default), the stage's checks."""
    from glode.settings import check_values

    try:
        for name, stage in STAGES.items():
            if name == "check":
                continue
            if "foreach" in stage:
                items = _lookup(params, stage["foreach"][2:-1])
                if not isinstance(items, dict):
                    raise Refused("foreach needs a mapping")
                runs = [{**params, "key": k, "item": v} for k, v in items.items()]
                cmd = stage["do"]["cmd"]
            else:
                runs, cmd = [params], stage["cmd"]
            for ctx in runs:
                used: set[str] = set()
                argv = shlex.split(_render(cmd, ctx, used))
                script = argv[1]
                g, command = _stage(script)
                try:
                    cctx = command.make_context(script, argv[2:])
                except Exception as exc:  # click usage errors (vendored or plain)
                    raise Refused(str(exc)) from None
                o = cctx.params
                declared = getattr(g["main"], "param_keys", {})  # the options made from glode/settings.py
                keys = {opt: key for opt, key in declared.items() if key in used}
                flat_params = flat(params)
                for opt, key in keys.items():
                    got, want = o[opt], flat_params[key]
                    got = getattr(got, "value", got)  # a choice arrives as a member of its enum
                    if isinstance(got, (list, tuple)):
                        got = list(got)
                    if type(got) is not type(want) and not (isinstance(want, (int, float)) and not isinstance(want, bool)
                                                            and isinstance(got, (int, float))):
                        raise Refused(f"{key}: the stage got {got!r}, params.yaml has {want!r}")
                    if got != want and not (isinstance(got, float) and math.isnan(got) and math.isnan(want)):
                        raise Refused(f"{key}: the stage got {got!r}, params.yaml has {want!r}")
                check_values({key: o[opt] for opt, key in declared.items()})
                _stage_own_checks(script, o, params, root)
    except (Refused, ParamError, ParamsError):
        return False
    return True


def _values(key: str):
    p = SCHEMA[key]
    pool = [st.just(p.default), st.integers(-3, 3), st.sampled_from([64, 2**32 - 1, 2**32, 3.0, 0.5, 1e-5, 1.0, 0.0,
                                                                      -0.5, 1e20, float("nan"), float("inf")]),
            st.booleans(), st.none(), st.text("abzOPERLOCde -", max_size=4),
            st.lists(st.sampled_from(["PER", "ORG", "LOC", "MISC", "O", "zh", "a b", "", 7]), max_size=3)]
    if p.choices:
        pool.append(st.sampled_from(p.choices))
    if p.type is float:
        pool.append(st.floats(-0.2, 1.2, allow_nan=False))
    return st.one_of(pool)


def _edges(key: str) -> list:
    p = SCHEMA[key]
    values = [p.default, None, True, "x", ["PER"], [], -1, 0, 0.5, 1.0, float("nan")]
    values += [b + d for b in (p.lo, p.hi) if b is not None for d in (-1, -0.5, 0, 0.5, 1)]
    return values + list(p.choices or ())


def test_the_check_agrees_with_the_stages_at_every_bound(root):
    """Each key at its bounds and with values of the wrong type: what random search may miss."""
    bad = [(key, v) for key in KEYS for v in _edges(key)
           if (check_params(mutate(COMMITTED, key, v), root) == []) != stages_accept(mutate(COMMITTED, key, v), root)]
    assert bad == []


ROUND_VARIANTS = [{}, {"r1": {"prev": "r0"}}, {"r1": {"prev": "r0"}, "r2": {"prev": "r0"}}, *[v for v, _ in ROUNDS.values()],
                  {"r1": {"prev": "r0"}, "r3": {"prev": "r1"}}, {"r2": {"prev": "r1"}}, {"x1": {"prev": "r0"}},
                  {f"r{MAX_ROUNDS}": {"prev": "r0"}}]

KEYS = [k for k in SCHEMA if k != "encoder.name"]  # names of hub models cannot be checked offline


@st.composite
def params_variants(draw):
    kind = draw(st.sampled_from(["value", "value", "value", "rounds", "unknown"]))
    if kind == "rounds":
        return with_rounds(COMMITTED, draw(st.sampled_from(ROUND_VARIANTS)))
    if kind == "unknown":  # in a section DVC unpacks into options; in others no stage would see it, and
        # the check still refuses it (a typo of a key would otherwise be ignored)
        sec = draw(st.sampled_from(["data", "model", "train", "denoise"]))
        return mutate(COMMITTED, f"{sec}.{draw(st.sampled_from(['dimm', 'epoch', 'seeds']))}", 1)
    key = draw(st.sampled_from(KEYS))
    return mutate(COMMITTED, key, draw(_values(key)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(params=params_variants())
def test_the_check_accepts_exactly_what_the_stages_accept(root, params):
    problems = check_params(params, root)
    assert (problems == []) == stages_accept(params, root), problems


def test_the_file_check_refuses_weights_without_the_local_view(tmp_path):
    from glode.params import check_params
    from tests.params_fixture import default_params

    params = default_params()
    params["retrain"]["span-weights"] = "neighbours"
    assert not [p for p in check_params(params, tmp_path) if p.startswith("retrain.")]
    params["denoise"]["use-local"] = False
    assert [p for p in check_params(params, tmp_path) if p.startswith("retrain.span-weights")] == [
        "retrain.span-weights: 'neighbours' weighs spans by the local view's neighbour counts; it needs "
        "denoise.use-local: true"]


def test_parameters_doc_holds_the_table_made_from_the_declarations():
    text = (ROOT / "docs" / "PARAMETERS.md").read_text(encoding="utf-8")
    block = text.split(REFERENCE_BEGIN, 1)[1].split(REFERENCE_END, 1)[0].lstrip("\n")
    assert block == reference_markdown(), "docs/PARAMETERS.md is stale: paste the output of `glode params` between its markers"


def test_reference_table_has_one_row_per_key_with_its_default_and_help():
    rows = reference_markdown().splitlines()[2:]
    assert [r.split(" | ")[0].strip("| `") for r in rows] == list(SCHEMA)
    k_row = rows[list(SCHEMA).index("k")]
    assert k_row == f"| `k` | `{SCHEMA['k'].default}` | an integer >= 1 | {SCHEMA['k'].help} |"
    assert "| `data.labels` | `[PER, ORG, LOC]` |" in reference_markdown()
