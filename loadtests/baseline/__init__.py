"""The baseline: the single-service design EventPost replaces, written by us to measure against.

One falcon app (``loadtests.baseline.app:app``) under ``gunicorn -w 7`` (sync
workers) that reads and writes its own SecantusDB directly: no auth, no search,
no reminders, no bus. ``invoke bench`` starts it beside EventPost; by hand:

    python -m secantus --host 127.0.0.1 --port 27100 --storage-path /tmp/baseline-db &
    BASELINE_MONGO_URI=mongodb://127.0.0.1:27100/ \
        gunicorn -w 7 -b 127.0.0.1:8100 loadtests.baseline.app:app

Its events have EventPost's event resource shape (API.md), so both answer with
the same bytes per event. It deliberately imports nothing from EventPost: importing
``services`` would load nameko and eventlet into every worker and skew its memory.
"""
