# motioncast: `make demo` and `make test` set everything up themselves (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := demo-out

.PHONY: setup test test-fast lint demo bench clean

setup: $(STAMP)

# torch first, pinned, so that nothing pulls a multi-GB CUDA build; then the project, constrained.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup lint
	$(VENV)/bin/pytest

test-fast: setup
	$(VENV)/bin/pytest -m "not slow"

# a small model and short windows, so that a few CPU minutes show the whole training path
DEMO_TRAINING := --set training.data.frames_in=4 --set training.data.frames_out=4 \
	--set training.data.crop=64 --set training.data.block_hours=2 --set training.data.seed=0 \
	--set training.data.split=[0.6,0.2,0.2] --set training.batch_size=4 \
	--set training.steps_per_epoch=40 --set training.validation_windows=16 \
	--set training.scaling.storage=$(DEMO)/runs

# the live system of the demo: its own archive and forecast store, the demo's registry
DEMO_LIVE := --set system.home=$(DEMO)/home --set system.inbox=$(DEMO)/live/inbox \
	--set stores.archive.location=$(DEMO)/live/archive --set stores.forecasts.location=$(DEMO)/live/forecasts \
	--set forecast.registry=$(DEMO)/registry --set forecast.max_input_age_minutes=60
DEMO_SERVICE := http://127.0.0.1:8000
DEMO_STORES := --store $(DEMO)/archive --forecasts $(DEMO)/forecasts

demo: setup
	-$(VENV)/bin/motioncast down $(DEMO_LIVE) 2>/dev/null
	rm -rf $(DEMO)
	$(VENV)/bin/motioncast simulate --out $(DEMO)/radar --start 2026-06-01T12:00 --minutes 360 --radars 2 --seed 0
	# hold back the 14:00 volumes: they arrive late, after the rest is archived
	mkdir -p $(DEMO)/late && mv $(DEMO)/radar/20260601T1400Z_* $(DEMO)/late/
	$(VENV)/bin/motioncast ingest $(DEMO)/radar --store $(DEMO)/archive --config $(DEMO)/radar/network.yaml
	$(VENV)/bin/motioncast archive info --store $(DEMO)/archive
	@echo "--- the late 14:00 volumes arrive: each frame is one write into its slot"
	$(VENV)/bin/motioncast ingest $(DEMO)/late --store $(DEMO)/archive --config $(DEMO)/radar/network.yaml
	$(VENV)/bin/motioncast archive info --store $(DEMO)/archive
	$(VENV)/bin/motioncast plot map --store $(DEMO)/archive --domain simnet --config $(DEMO)/radar/network.yaml --out $(DEMO)/mosaic-last-frame.png
	@echo "--- a region: radar sim01 cut to a lon/lat box at ingest, its cells as on its own grid"
	$(VENV)/bin/motioncast ingest $(DEMO)/radar/*_sim01.pvol.h5 --store $(DEMO)/region --set 'domains.near01={source: sim01, bbox: [4.0, 51.6, 5.2, 52.4], bbox_crs: "EPSG:4326"}'
	$(VENV)/bin/motioncast archive info --store $(DEMO)/region
	@echo "--- real composites, when the samples are here: OPERA cut to the Alps, MRMS to the Gulf coast"
	@data=$${MOTIONCAST_RADAR_DATA:-../shared/data/radar}; \
	if [ -d $$data/composites/opera/20180824 ] && [ -d $$data/composites/mrms/2019/06/10 ]; then \
	  $(VENV)/bin/motioncast ingest $$data/composites/opera/20180824 --store $(DEMO)/composites \
	    --set 'domains.alps={source: opera, bbox: [5.0, 44.0, 17.0, 49.0], bbox_crs: "EPSG:4326"}' && \
	  $(VENV)/bin/motioncast ingest $$data/composites/mrms/2019/06/10 --store $(DEMO)/composites \
	    --set 'domains.gulf={source: mrms, bbox: [-92.0, 25.0, -86.0, 30.0]}' && \
	  $(VENV)/bin/motioncast archive info --store $(DEMO)/composites; \
	else echo "real OPERA and MRMS samples absent below $$data (MOTIONCAST_RADAR_DATA): skipped"; fi
	$(VENV)/bin/motioncast train --store $(DEMO)/archive --registry $(DEMO)/registry --workers 2 --max-minutes 3 $(DEMO_TRAINING)
	@echo "--- promotion: refused unless a paired bootstrap puts the model above pysteps S-PROG on its validation windows"
	-$(VENV)/bin/motioncast models promote v0001 --registry $(DEMO)/registry
	$(VENV)/bin/motioncast models list --registry $(DEMO)/registry
	@echo "--- forecasts into the forecast store: the promoted model, else (as the cycle does) pysteps"
	-$(VENV)/bin/motioncast forecast --store $(DEMO)/archive --forecasts $(DEMO)/forecasts --registry $(DEMO)/registry --method motionrnn
	$(VENV)/bin/motioncast forecast --store $(DEMO)/archive --forecasts $(DEMO)/forecasts --method extrapolation
	$(VENV)/bin/motioncast forecast --store $(DEMO)/archive --forecasts $(DEMO)/forecasts --method sprog --issue-time 2026-06-01T17:00
	$(VENV)/bin/python -c "import pipelines; print(pipelines.open_forecasts('$(DEMO)/forecasts')[['method', 'model_version', 'reason']].to_dataframe())"
	@echo "--- the whole system live: the synthetic network on a 10x clock, a cycle every 5 simulated minutes"
	$(VENV)/bin/motioncast up --simulate --speed 10 $(DEMO_LIVE) && sleep 75 && \
	echo "--- a fault: Prefect's server is killed; the supervisor restarts it, the cycle catches up" && \
	$(PY) -c "import json, os, signal; s = json.load(open('$(DEMO)/home/state.json')); os.kill(s['processes']['prefect-server']['pid'], signal.SIGKILL)" && \
	sleep 75 && $(VENV)/bin/motioncast status $(DEMO_LIVE) && \
	$(PY) -c "import httpx; r = httpx.get('$(DEMO_SERVICE)/v1/forecasts/simnet/latest', params={'format': 'png'}, timeout=120); r.raise_for_status(); open('$(DEMO)/live-latest.png', 'wb').write(r.content)"; \
	rc=$$?; $(VENV)/bin/motioncast down $(DEMO_LIVE); exit $$rc
	$(PY) -c "import pipelines; print(pipelines.open_forecasts('$(DEMO)/live/forecasts')[['method', 'model_version', 'reason']].to_dataframe().to_string())"
	@echo "map of the latest live forecast: $(DEMO)/live-latest.png"
	@echo "--- verification: afternoon forecasts scored beside persistence and extrapolation, same cells"
	for t in 15:00 15:30 16:00 16:30; do \
	  $(VENV)/bin/motioncast forecast $(DEMO_STORES) --registry $(DEMO)/registry --issue-time 2026-06-01T$$t --method motionrnn 2>/dev/null || \
	  $(VENV)/bin/motioncast forecast $(DEMO_STORES) --issue-time 2026-06-01T$$t --method extrapolation || exit 1; \
	done
	$(VENV)/bin/motioncast verify $(DEMO_STORES) --scores $(DEMO)/scores --out $(DEMO)/verification
	$(VENV)/bin/motioncast plot panel $(DEMO_STORES) --issue-time 2026-06-01T16:00 --config $(DEMO)/radar/network.yaml --out $(DEMO)/panel.png
	$(VENV)/bin/motioncast plot gif $(DEMO_STORES) --issue-time 2026-06-01T16:00 --config $(DEMO)/radar/network.yaml --out $(DEMO)/forecast.gif

bench: setup
	$(PY) bench/startup.py
	$(PY) bench/ingest.py
	$(PY) bench/late_frames.py
	$(PY) bench/sweeps.py
	$(PY) bench/model.py
	$(PY) bench/train.py
	$(PY) bench/skill.py
	$(PY) bench/serve.py
	$(PY) bench/fallback.py
	$(PY) bench/faults.py

clean:
	rm -rf $(DEMO) .pytest_cache
