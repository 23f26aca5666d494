"""The files layer: every command reads and writes files through these modules.

    source.py    an input read once (a pipe is spooled), named as the user gave it
    records.py   the records of a JSONL, JSON or Parquet file, streamed
    problems.py  one record -> conversation and id parser (run, eval, train, view)
    jsonl.py     JSONL lines with file:line errors; Unicode and NaN checks
    guard.py     the output guard: no folder, device, FIFO, input, or foreign file
    atomic.py    whole files replaced atomically, with ordinary modes
    appender.py  resumable JSONL outputs: checked, repaired, appended line by line
    tables.py    JSON rows and Parquet row groups written; the spool
    formats.py   the named, versioned formats pacore writes, and their check
    locks.py     one writer per output

No module outside this package opens an output for writing (`tests/test_layering_files.py`).
"""
