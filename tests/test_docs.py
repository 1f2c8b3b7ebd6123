"""Help is the documentation: every command has an example, man pages are fresh, startup is lazy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import readme_tour
import typer
from conftest import run_vecx, run_vecx_in_process, run_vecx_process, shared

from vecx.cli import manpages
from vecx.cli.main import app

ROOT = Path(__file__).resolve().parents[1]


def all_commands() -> list[str]:
    root = typer.main.get_command(app)
    names = []
    for name, cmd in root.commands.items():
        subs = getattr(cmd, "commands", {})
        names += [f"{name} {sub}" for sub in subs] if subs else [name]
    return sorted(names)


@pytest.mark.parametrize("command", all_commands())
def test_every_command_has_help_with_an_example(command: str) -> None:
    r = run_vecx(*command.split(), "--help")
    assert r.code == 0, r.stderr
    assert "Examples:" in r.out
    assert f"vecx {command.split()[0]}" in r.out.split("Examples:")[1]


def test_readme_tours_every_command() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in all_commands():
        assert f"vecx {command}" in readme, f"README does not show 'vecx {command}'"


def test_man_pages_are_fresh() -> None:
    committed = {p.name: p.read_text() for p in (ROOT / "man").glob("*.1")}
    generated = manpages.pages()
    assert sorted(committed) == sorted(generated), "run 'make man' and commit man/"
    for name, text in generated.items():
        assert committed[name] == text, f"man/{name} is stale: run 'make man' and commit man/"


def test_help_does_not_import_numpy_or_pyarrow() -> None:
    code = ("import sys; from vecx.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numpy', 'pyarrow', 'orjson', 'tqdm') if m in sys.modules]\n"
            "sys.stderr.write(repr(heavy))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stderr.strip() == "[]"


def test_shell_completion() -> None:
    env = {"_VECX_COMPLETE": "complete_bash", "COMP_WORDS": "vecx tru", "COMP_CWORD": "1"}
    assert run_vecx(env=env).out.split() == ["truncate", "truth"]
    env.update(COMP_WORDS="vecx int8 --sa", COMP_CWORD="2")
    words = run_vecx(env=env).out.split()
    assert "--sample" in words and "--save-state" in words


def test_the_real_command_and_the_installed_entry_point(tmp_path: Path) -> None:
    """End to end: ``python -m vecx`` and the ``vecx`` script pip installed run in processes of their
    own and give what the in-process runner of the other tests gives: the same bytes, messages and
    exit codes."""
    script = shutil.which("vecx", path=os.path.dirname(sys.executable))
    assert script, f"no vecx entry point beside {sys.executable}: install the package (make test does)"
    from vecx import __version__

    proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"vecx {__version__}"), proc.stderr
    np.save(tmp_path / "x.npy", np.arange(60, dtype=np.float32).reshape(20, 3) + 1)
    proc = subprocess.run([script, "import", str(tmp_path / "x.npy"), "-o", str(tmp_path / "script.parquet")],
                          capture_output=True, timeout=120, env={**os.environ, "VECX_NO_PROGRESS": "1"})
    assert proc.returncode == 0, proc.stderr.decode()
    assert run_vecx_in_process("import", tmp_path / "x.npy", "-o", tmp_path / "here.parquet").code == 0
    assert (tmp_path / "script.parquet").read_bytes() == (tmp_path / "here.parquet").read_bytes()
    stream = (tmp_path / "x.npy").read_bytes()
    for args, stdin in ((["info", tmp_path / "here.parquet", "--json"], None), (["import", "-", "-o", "-"], stream),
                        (["truncate", tmp_path / "here.parquet", "-o", "-", "--dim", "9"], None),
                        (["import", "-", "-o", tmp_path / "bad.parquet"], b"not vectors"), (["no-such-command"], None)):
        assert run_vecx_process(*args, stdin=stdin) == run_vecx_in_process(*args, stdin=stdin), args


def test_version_and_no_args() -> None:
    from vecx import __version__

    assert run_vecx("--version").out.strip() == f"vecx {__version__}"
    r = run_vecx()
    assert "Usage: vecx" in r.out + r.stderr


def test_unknown_command_is_a_usage_error() -> None:
    r = run_vecx("binarise")
    assert r.code == 2 and "No such command" in r.stderr


def test_a_command_line_builds_only_the_command_it_runs() -> None:
    from vecx.cli.main import build_app

    for name in ("query", "truncate", "spec", "vsa"):
        built = build_app(name)
        assert [c.name for c in built.registered_commands] + [g.name for g in built.registered_groups] == [name]
    everything = build_app("no-such-command")  # typer's suggestions need every command
    assert len(everything.registered_commands) == len(build_app().registered_commands) > 10


def test_the_console_script_resumes_the_collector_before_the_command(tmp_path: Path) -> None:
    """``vecx.cli.run`` pauses the garbage collector while modules load; the command itself runs
    with it on, after the command's libraries (``LIBRARIES``) are loaded and frozen."""
    np.save(tmp_path / "x.npy", np.arange(60, dtype=np.float32).reshape(20, 3) + 1)
    ok_ = run_vecx_in_process
    assert ok_("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet").code == 0
    assert ok_("index", tmp_path / "x.parquet", "-o", tmp_path / "x.vecx").code == 0
    code = ("import atexit, gc, sys\n"
            "from vecx import api\n"
            "seen = []\n"
            "real = api.query\n"
            "def watched(*args, **kwargs):\n"
            "    seen.append([gc.isenabled(), gc.get_freeze_count() > 0, 'usearch.index' in sys.modules])\n"
            "    return real(*args, **kwargs)\n"
            "api.query = watched\n"
            "atexit.register(lambda: sys.stderr.write(repr(seen)))\n"
            f"sys.argv = ['vecx', 'query', {str(tmp_path / 'x.vecx')!r}, '--vector', {str(tmp_path / 'x.npy')!r}]\n"
            "from vecx.cli import run\n"
            "run()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr.strip() == "[[True, True, True]]", proc.stderr


@pytest.mark.parametrize("scene", ["glove", *[pytest.param(s, marks=pytest.mark.slow)
                                               for s in readme_tour.SCENES if s != "glove"]])
def test_readme_shows_what_the_commands_print(scene: str) -> None:
    """Every README block marked ``<!-- tour: SCENE -->`` shows what its commands print today
    (timings and file sizes aside): the bundled sample's always, the shared data sets' where
    they are (CI). ``make readme`` rewrites them."""
    data = readme_tour.SCENES[scene][0]
    if readme_tour.SHARED_DATA in data.parents:
        shared(data.relative_to(readme_tour.SHARED_DATA).parts[0])  # skips (or fails in CI) without it
    drifts = readme_tour.tour([scene], write=False)
    assert not drifts, "\n".join(drifts) + "\nrun 'make readme' to rewrite the README's outputs"


def test_the_tour_compares_what_it_should() -> None:
    """Timings and sizes are masked, close numbers pass, other differences fail."""
    shown = ["stage  recall@10  QPS  p50 ms  p99 ms", "graph  0.9736     9,119  0.582   0.895",
             "file  x (62,233,639 bytes, index)", '  "seconds": 0.151,', "wrote 3 rows (0.12 s)"]
    printed = ["stage  recall@10  QPS    p50 ms  p99 ms", "graph  0.9771     12,418  5.058   6.296",
               "file  x (73,998,483 bytes, index)", '  "seconds": 10.2,', "wrote 3 rows (1.5 s)"]
    assert readme_tour.same_output(shown, printed)
    for line, other in ((1, "graph  0.9536     9,119  0.582   0.895"), (2, "file  y (1 bytes, index)"),
                        (4, "wrote 4 rows (0.12 s)")):
        assert not readme_tour.same_output(shown, [*printed[:line], other, *printed[line + 1:]]), other
    assert not readme_tour.same_output(shown, printed[:-1])
    moved = ["target: oversample 2, expansion 192 (recall@10 0.9956)"]
    chosen = ["target: oversample 2, expansion 256 (recall@10 0.9961)"]
    assert not readme_tour.same_output(moved, chosen) and readme_tour.same_output(moved, chosen, loose=True)
    assert not readme_tour.same_output(moved, ["target: factor 2, expansion 256 (recall@10 0.9961)"], loose=True)
    # A pipeline's processes reach the terminal in whichever order they finish: its lines in any order.
    piped = ["vecx: wrote 4,000 vectors (0.17 s)", "vecx: wrote 16 x float32 (0.34 s)", "rows  4,000"]
    raced = [piped[0], piped[2], "vecx: wrote 16 x float32 (0.21 s)"]
    assert not readme_tour.same_output(piped, raced) and readme_tour.same_output(piped, raced, any_order=True)
    assert not readme_tour.same_output(piped, [*raced[:2], "vecx: wrote 8 x float32 (0.2 s)"], any_order=True)
    blocks = readme_tour.read_blocks(["text", "<!-- tour: glove -->", "    $ vecx a", "    out", "    $ vecx b", "",
                                      "    $ not marked", "", "<!-- tour: debian loose -->", "    $ vecx c"])
    assert [(b.scene, b.steps, b.loose) for b in blocks] == [("glove", [("vecx a", ["out"]), ("vecx b", [])], False),
                                                              ("debian", [("vecx c", [])], True)]
