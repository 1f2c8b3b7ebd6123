# vecx — developer entry points. Needs only python3 (>= 3.10) and make: everything else goes into .venv.
.DELETE_ON_ERROR:
.PHONY: help demo test test-fast lint man readme bench bench-quick bench-foundation bench-index bench-segments bench-pq-seeds bench-ivf bench-scan clean

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
VECX   := $(BIN)/vecx
SAMPLE := tests/data/glove-4k
NOBEL  := tests/data/nobel-300
DEMO   := demo-out

help:
	@echo "make demo    create .venv, install vecx, run a short tour on the bundled sample"
	@echo "make test    create .venv, install vecx with test extras, run all the tests (as CI does)"
	@echo "make test-fast  the same without the tests marked slow (the edit loop: under 3 minutes)"
	@echo "make lint    ruff, mypy and the import-layer contracts (what CI runs)"
	@echo "make man     regenerate man/ from the CLI"
	@echo "make readme  rerun the README's commands and write their outputs into it"
	@echo "make bench   vecx bench --peers on the shared data sets, into BENCHMARKS.md (long)"
	@echo "make bench-quick  smoke runs of the benchmark scripts"
	@echo "make bench-foundation  I/O, memory, truth and start-up against pyarrow/faiss, to bench-foundation.md (minutes)"
	@echo "make bench-index  index/query/eval against usearch and faiss, to bench-index.md (long)"
	@echo "make bench-pq-seeds  PQ recall over 5 codebook seeds, vecx vs faiss, to bench-pq-seeds.md (minutes)"
	@echo "make bench-ivf  coarse lists across nprobe, vecx vs faiss IVF at equal recall, to bench-ivf.md (minutes)"
	@echo "make bench-scan  exhaustive PQ/RaBitQ scans vs faiss at 30k/300k/1M rows on 1 and 2 cores, to bench-scan.md (~15 min)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs are regular (not editable) installs, so the tests see exactly what `pip install .` gives users.
install: $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check '.[test]'

install-lint: $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check '.[lint]'

install-bench: $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check '.[test,bench,plot]'

# Both run on TEST_WORKERS processes (pytest-xdist; the slowest tests are taken over by an idle worker);
# TEST_WORKERS=0 runs them in one. Tests needing a process of their own start one (tests/conftest.py).
# test-fast leaves out the tests marked slow: memory measured per process, signals, concurrent
# processes, cross-process determinism, the shared data sets, deep property runs and big builds.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

test: install-test
	$(PYTEST) tests

test-fast: install-test
	$(PYTEST) -m "not slow" tests

# Style, types and the stack: ruff, mypy and import-linter's contracts, all configured in pyproject.toml.
# The repository root is the package, so mypy checks it as vecx through a .lint/vecx link, run from
# .lint: from the root, the codecs/ directory would shadow the standard library's codecs module.
lint: install-lint
	$(BIN)/python -m ruff check .
	@mkdir -p .lint && ln -sfn .. .lint/vecx
	cd .lint && ../$(BIN)/python -m mypy --config-file ../pyproject.toml -p vecx
	$(BIN)/lint-imports

demo: install
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	@set -e; run() { echo; echo "\$$ $$*"; "$$@"; }; export PATH="$(CURDIR)/$(BIN):$$PATH"; \
	run vecx import $(SAMPLE)/base.npy -o $(DEMO)/glove.parquet --ids $(SAMPLE)/words.txt; \
	run vecx import $(SAMPLE)/queries.npy -o $(DEMO)/queries.parquet --ids $(SAMPLE)/query_words.txt; \
	run vecx spec explain truncate:32,int8 --dim 50; \
	run vecx truncate $(DEMO)/glove.parquet -o $(DEMO)/glove.t32.parquet --dim 32; \
	run vecx int8 $(DEMO)/glove.t32.parquet -o $(DEMO)/glove.t32.i8.parquet; \
	run vecx encode $(DEMO)/glove.parquet -o $(DEMO)/glove.chain.parquet --spec truncate:32,int8; \
	run cmp $(DEMO)/glove.chain.parquet $(DEMO)/glove.t32.i8.parquet; echo "(identical: one command == two steps)"; \
	run vecx info $(DEMO)/glove.chain.parquet; \
	run vecx truth $(DEMO)/glove.parquet --queries $(DEMO)/queries.parquet -o $(DEMO)/gt.parquet -k 5; \
	run vecx truth $(DEMO)/glove.chain.parquet --queries $(DEMO)/queries.parquet -o $(DEMO)/gt.chain.parquet -k 5; \
	run vecx info $(DEMO)/gt.parquet; \
	run vecx encode $(DEMO)/glove.parquet -o $(DEMO)/glove.i8.parquet --spec int8:mode=global; \
	run vecx index $(DEMO)/glove.i8.parquet -o $(DEMO)/glove.vecx --rescore-vectors $(DEMO)/glove.parquet; \
	run vecx info $(DEMO)/glove.vecx; \
	run vecx query $(DEMO)/glove.vecx --like king --like paris -k 5 --format csv; \
	run vecx query $(DEMO)/glove.vecx --vector $(DEMO)/queries.parquet -k 3 --oversample 1; \
	echo; echo "\$$ vecx import ... -o - | vecx truncate - -o - --dim 16 | vecx info -"; \
	vecx import $(SAMPLE)/base.npy -o - | vecx truncate - -o - --dim 16 | vecx info -
	@set -e; run() { echo; echo "\$$ $$*"; "$$@"; }; export PATH="$(CURDIR)/$(BIN):$$PATH"; \
	run vecx vsa $(NOBEL)/records.jsonl -o $(DEMO)/nobel.parquet --dim 1024 --keep firstname,surname; \
	run vecx index $(DEMO)/nobel.parquet -o $(DEMO)/nobel.vecx; \
	run vecx query $(DEMO)/nobel.vecx --record '{"prizes": [{"category": "physics"}], "bornCountry": "Germany"}' -k 5 --fields firstname,surname --format csv; \
	run vecx query $(DEMO)/nobel.vecx --like 6 -k 3 --fields firstname,surname --format csv; \
	run vecx vsa explain $(DEMO)/nobel.vecx --like 6 --record '{"firstname": "Pierre", "bornCountry": "France"}'
	@echo; echo "Nearest words, float32 vs truncate:32,int8 (from the two truth files):"
	@$(BIN)/python -c "import pyarrow.parquet as pq; \
	a = pq.read_table('$(DEMO)/gt.parquet').to_pylist(); b = pq.read_table('$(DEMO)/gt.chain.parquet').to_pylist(); \
	[print(f\"  {x['query_id']:>10}: {', '.join(x['ids']):<45} | {', '.join(y['ids'])}\") for x, y in zip(a[:8], b[:8])]"

man: install
	$(BIN)/python -m vecx.cli.manpages man

# Rerun the README's tour (blocks marked <!-- tour: SCENE -->) and write what the commands print;
# make test fails when they drift. Scenes on ../shared/data run where it is (a few minutes).
readme: install
	$(BIN)/python tests/readme_tour.py --write

# vecx bench --peers on ../shared/data/{debian-minilm-30k,glove50-100k,sift128-images-30k}: replaces the
# "vecx bench" section of BENCHMARKS.md (other sections stay) and draws tests/benchmarks/plots/SET.png.
bench: install-bench
	$(BIN)/python tests/benchmarks/bench_sets.py --out BENCHMARKS.md

bench-foundation: install-bench
	$(BIN)/python tests/benchmarks/bench_foundation.py --out bench-foundation.md

bench-quick: install-bench
	$(VECX) bench $(SAMPLE)/base.npy --queries $(SAMPLE)/queries.npy --spec f16 --spec binarize --spec pca:16 --peers
	$(BIN)/python tests/benchmarks/bench_foundation.py --quick
	$(BIN)/python tests/benchmarks/bench_index.py --quick

# Index, query and eval against raw usearch and faiss (three data sets + a synthetic 1M set: long).
bench-index: install-bench
	$(BIN)/python tests/benchmarks/bench_index.py --out bench-index.md

# Append / compact / 4-segment queries against a full rebuild on a synthetic 1M + 100k set (about 15 minutes).
bench-segments: install-bench
	$(BIN)/python tests/benchmarks/bench_segments.py --out bench-segments.md

bench-pq-seeds: install-bench
	$(BIN)/python tests/benchmarks/bench_pq_seeds.py --out bench-pq-seeds.md

# Coarse lists across nprobe: recall, batch QPS and single-query p50 of vecx and faiss IVF-PQ, compared at equal recall.
bench-ivf: install-bench
	$(BIN)/python tests/benchmarks/bench_ivf.py --out bench-ivf.md

# Exhaustive scans against faiss as rows (30k, 300k, 1M) and threads (1, 2) grow, and against the machine's limits.
bench-scan: install-bench
	$(BIN)/python tests/benchmarks/bench_scan.py --out bench-scan.md

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info .pytest_cache .hypothesis
