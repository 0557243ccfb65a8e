"""Records streamed to Parquet in chunks, so a run of any length keeps a bounded number of them in memory.

:class:`ParquetSink` is a :class:`~sim.world.simulation.World` ``sink``: it buffers image, round and user
records and, every ``chunk_rows`` records, appends them as a row group to ``trace.parquet`` (image and round
records in the columns :func:`~sim.world.records.trace_frame` gives them, sorted by time within the chunk)
or ``users.parquet`` (in order of departure). The files are written under temporary names and renamed into
place by :meth:`ParquetSink.close`, so a run that fails leaves no half-written table under the final name.
With ``table=ChunkFiles`` the sink writes each chunk as a file of its own instead, for another process to read
while the run goes on (:class:`ChunkReader`).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sim.world.records import TRACE_COLUMNS, TRACE_SORT_KEYS, FaultRecord, ImageRecord, RoundRecord, UserRecord

#: Records buffered per table before a row group is written.
DEFAULT_CHUNK_ROWS = 50_000

_ARROW_TYPES = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}


def _fields(record_type: type) -> list[tuple[str, pa.DataType]]:
    hints = typing.get_type_hints(record_type)
    return [(f.name, _ARROW_TYPES[hints[f.name]]) for f in dataclasses.fields(record_type)]


def _trace_schema() -> pa.Schema:
    """The columns of :func:`~sim.world.records.trace_frame` (:data:`~sim.world.records.TRACE_COLUMNS`)."""
    return pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in TRACE_COLUMNS.items()])


TRACE_SCHEMA = _trace_schema()
USERS_SCHEMA = pa.schema(_fields(UserRecord))


def _arrow_table(columns: dict, schema: pa.Schema, n: int) -> pa.Table:
    """``n`` rows given as columns (Arrow arrays, or sequences converted to the field's type) as a table of
    ``schema``; the fields not given are null."""
    arrays = []
    for field in schema:
        values = columns.get(field.name)
        if values is None:
            arrays.append(pa.nulls(n, type=field.type))
        else:
            arrays.append(values if isinstance(values, pa.Array) else pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _table(records: list, record_type: type, schema: pa.Schema, extra: dict[str, pa.Array] | None = None) -> pa.Table:
    """Records of one type as a table of ``schema`` (columns the type lacks are null; ``extra`` adds some)."""
    columns = {name: [getattr(r, name) for r in records] for name, _ in _fields(record_type) if name in schema.names}
    return _arrow_table({**columns, **(extra or {})}, schema, len(records))


def _column_table(columns: dict, record_type: type, kind: str, time_field: str) -> pa.Table:
    """Records given as columns (``{field: numpy array}``) as a table of the trace's schema."""
    n = len(columns[time_field])
    record = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([kind])).cast(pa.string())
    return _arrow_table({**columns, "record": record, "t_s": pa.array(columns[time_field], type=pa.float64())},
                        TRACE_SCHEMA, n)


def _split_rows(rows: pa.Table, chunk_rows: int, final: bool) -> tuple[list[pa.Table], pa.Table]:
    """``rows`` cut into whole chunks of ``chunk_rows`` (and, when ``final``, the last part too), and the rest."""
    chunks, start = [], 0
    while rows.num_rows - start >= chunk_rows or (final and start < rows.num_rows):
        size = min(chunk_rows, rows.num_rows - start)
        chunks.append(rows.slice(start, size))
        start += size
    return chunks, rows.slice(start)


def parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer for one of the run's tables: dictionary encoding for its text columns only (they have few
    distinct values; on the numeric columns, nearly all distinct, dictionary encoding costs time and space)."""
    text = [f.name for f in schema if pa.types.is_string(f.type)]
    return pq.ParquetWriter(path, schema, use_dictionary=text)


class ParquetTable:
    """One of a run's tables as ``directory/{name}.parquet``, a row group per :meth:`write_table`: written under a
    temporary name, closed by :meth:`close` and moved into place by :meth:`publish` (so that a sink publishes its
    tables only once all of them are whole), or removed by :meth:`abort`."""

    def __init__(self, directory: Path, name: str, schema: pa.Schema):
        self.path = Path(directory) / f"{name}.parquet"
        self._tmp = Path(directory) / f".{name}.parquet.{os.getpid()}.tmp"
        self._writer = parquet_writer(self._tmp, schema)

    def write_table(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()

    def publish(self) -> None:
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001 - already failing; the temporary file goes either way
            pass
        self._tmp.unlink(missing_ok=True)


class ChunkFiles:
    """One of a run's tables as Arrow IPC files, one per :meth:`write_table` (LZ4-compressed):
    ``{name}-000000.arrow``, ``{name}-000001.arrow``, ..., each renamed into place once whole, and at
    :meth:`publish` ``{name}.chunks`` holding their number. Another process reads the table chunk by chunk while
    it is being written (:class:`ChunkReader`): :func:`sim.world.sharding.run_sharded` appends its shards' chunks
    to the run's Parquet tables while the shards run. Writing a chunk this way is cheaper than encoding it as
    Parquet."""

    OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")

    def __init__(self, directory: Path, name: str, schema: pa.Schema):
        self.directory, self.name, self.schema = Path(directory), name, schema
        self.count = 0

    def write_table(self, table: pa.Table) -> None:
        path = chunk_path(self.directory, self.name, self.count)
        tmp = path.with_suffix(".tmp")
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, self.schema, options=self.OPTIONS) as writer:
            writer.write_table(table)
        os.replace(tmp, path)
        self.count += 1

    def close(self) -> None:
        pass

    def publish(self) -> None:
        tmp = self.directory / f".{self.name}.chunks.tmp"
        tmp.write_text(str(self.count))
        tmp.replace(self.directory / f"{self.name}.chunks")

    def abort(self) -> None:
        for index in range(self.count + 1):
            chunk_path(self.directory, self.name, index).unlink(missing_ok=True)
            chunk_path(self.directory, self.name, index).with_suffix(".tmp").unlink(missing_ok=True)


def chunk_path(directory: Path, name: str, index: int) -> Path:
    """Where :class:`ChunkFiles` puts chunk ``index`` of table ``name``."""
    return Path(directory) / f"{name}-{index:06d}.arrow"


class ChunkReader:
    """Reads the chunks of a table that :class:`ChunkFiles` is writing in ``directory`` (maybe in another process),
    in order, each as soon as it is whole."""

    def __init__(self, directory: Path, name: str):
        self.directory, self.name = Path(directory), name
        #: The next chunk to read, and how many there are (``None`` until the writer has published).
        self.next = 0
        self.count: int | None = None

    def ready(self) -> bool:
        """Whether the next chunk can be read now."""
        return chunk_path(self.directory, self.name, self.next).exists()

    def finished(self) -> bool:
        """Whether every chunk has been read (only once the writer has published their number)."""
        if self.count is None:
            marker = self.directory / f"{self.name}.chunks"
            if not marker.exists():
                return False
            self.count = int(marker.read_text())
        return self.next >= self.count

    def take(self) -> pa.Table:
        """The next chunk, read into memory; its file is removed."""
        path = chunk_path(self.directory, self.name, self.next)
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        path.unlink()
        self.next += 1
        return table


class ParquetSink:
    """Streams a world's records to ``out/trace.parquet`` and ``out/users.parquet`` (module docstring)."""

    def __init__(self, out: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS, table: type = ParquetTable):
        if int(chunk_rows) < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self.out = Path(out)
        self.chunk_rows = int(chunk_rows)
        self._images: list[ImageRecord] = []
        self._rounds: list[RoundRecord] = []
        self._faults: list[FaultRecord] = []
        #: User rows not written yet.
        self._held_users: list[pa.Table] = []
        self._held_user_rows = 0
        #: Rows given as columns (tables of the trace's schema), not written yet.
        self._held: list[pa.Table] = []
        self._held_rows = 0
        self._trace_writer = table(self.out, "trace", TRACE_SCHEMA)
        self._users_writer = table(self.out, "users", USERS_SCHEMA)
        #: Rows written so far, per table.
        self.rows = {"trace": 0, "users": 0}
        self.closed = False

    def add_image(self, record: ImageRecord) -> None:
        self._images.append(record)
        if len(self._images) + len(self._rounds) + self._held_rows >= self.chunk_rows:
            self._flush_trace()

    def add_round(self, record: RoundRecord) -> None:
        self._rounds.append(record)
        if len(self._images) + len(self._rounds) + self._held_rows >= self.chunk_rows:
            self._flush_trace()

    def add_columns(self, images: dict | None, rounds: dict | None) -> None:
        """Image and round records given as columns (:class:`~sim.world.records.EpochColumns`)."""
        for columns, record_type, kind, time_field in ((images, ImageRecord, "image", "t_received_s"),
                                                       (rounds, RoundRecord, "round", "t_done_s")):
            if columns:
                table = _column_table(columns, record_type, kind, time_field)
                self._held.append(table)
                self._held_rows += table.num_rows
        if len(self._images) + len(self._rounds) + self._held_rows >= self.chunk_rows:
            self._flush_trace()

    def add_fault(self, record: FaultRecord) -> None:
        self._faults.append(record)

    def add_user(self, record: UserRecord) -> None:
        """One user record (the world gives them as columns, :meth:`add_user_columns`)."""
        self.add_user_columns({name: [getattr(record, name)] for name in USERS_SCHEMA.names})

    def add_user_columns(self, columns: dict) -> None:
        """User records given as columns (``{field of UserRecord: list}``), in order of departure."""
        table = _arrow_table(columns, USERS_SCHEMA, len(columns["user_id"]))
        self._held_users.append(table)
        self._held_user_rows += table.num_rows
        if self._held_user_rows >= self.chunk_rows:
            self._flush_users()

    def _flush_trace(self, final: bool = False) -> None:
        """Write the records held as row groups of ``chunk_rows`` image and round rows each, sorted by time, in
        the order they came (the fault records held join the first); ``final`` writes the rest too."""
        parts = []
        for records, record_type, kind, time_field in (
            (self._images, ImageRecord, "image", "t_received_s"),
            (self._rounds, RoundRecord, "round", "t_done_s"),
        ):
            if records:
                extra = {"record": pa.array([kind] * len(records), type=pa.string())}
                extra["t_s"] = pa.array([getattr(r, time_field) for r in records], type=pa.float64())
                parts.append(_table(records, record_type, TRACE_SCHEMA, extra))
        parts = self._held + parts
        self._images, self._rounds, self._held, self._held_rows = [], [], [], 0
        chunks, rest = _split_rows(pa.concat_tables(parts), self.chunk_rows, final) if parts else ([], None)
        for chunk in chunks:
            self._write_chunk(chunk)
        if final and self._faults:
            self._write_chunk(None)
        if rest is not None and rest.num_rows:
            self._held, self._held_rows = [rest], rest.num_rows

    def _write_chunk(self, rows: pa.Table | None) -> None:
        parts = [] if rows is None else [rows]
        if self._faults:
            parts.append(_table(self._faults, FaultRecord, TRACE_SCHEMA,
                                {"record": pa.array(["fault"] * len(self._faults), type=pa.string())}))
            self._faults = []
        if parts:
            chunk = pa.concat_tables(parts).sort_by([(key, "ascending") for key in TRACE_SORT_KEYS])
            self._trace_writer.write_table(chunk)
            self.rows["trace"] += chunk.num_rows

    def _flush_users(self, final: bool = False) -> None:
        """Write the user records held as row groups of ``chunk_rows`` rows; ``final`` writes the rest too."""
        if not self._held_users:
            return
        chunks, rest = _split_rows(pa.concat_tables(self._held_users), self.chunk_rows, final)
        for chunk in chunks:
            self._users_writer.write_table(chunk)
            self.rows["users"] += chunk.num_rows
        self._held_users, self._held_user_rows = ([rest], rest.num_rows) if rest.num_rows else ([], 0)

    def close(self) -> None:
        """Write what is buffered and move both tables into place."""
        if self.closed:
            return
        self._flush_trace(final=True)
        self._flush_users(final=True)
        self._trace_writer.close()
        self._users_writer.close()
        self._trace_writer.publish()
        self._users_writer.publish()
        self.closed = True

    def abort(self) -> None:
        """Drop the partial tables (after a failed run)."""
        if self.closed:
            return
        self._trace_writer.abort()
        self._users_writer.abort()
        self.closed = True


def fault_table(records: list[FaultRecord]) -> pa.Table:
    """Fault records as rows of the trace's schema."""
    return _table(records, FaultRecord, TRACE_SCHEMA, {"record": pa.array(["fault"] * len(records), type=pa.string())})


@contextmanager
def streamed(world, directory: Path | None, table: type = ParquetTable) -> Iterator[ParquetSink | None]:
    """Within the block, ``world``'s records stream to ``directory`` (``None``: they stay in memory): the tables
    are moved into place when the block ends normally and dropped when it raises. ``table``: how each table is
    written (:class:`ParquetTable`, or :class:`ChunkFiles` for a reader in another process)."""
    if directory is None:
        yield None
        return
    sink = ParquetSink(Path(directory), table=table)
    world.set_sink(sink)
    try:
        yield sink
    except BaseException:
        sink.abort()
        raise
    sink.close()


__all__ = ["DEFAULT_CHUNK_ROWS", "ChunkFiles", "ChunkReader", "ParquetSink", "ParquetTable", "TRACE_SCHEMA",
           "USERS_SCHEMA", "chunk_path", "fault_table", "parquet_writer", "streamed"]
