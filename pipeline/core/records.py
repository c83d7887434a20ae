"""Record model: stable ids, provenance columns and one Arrow schema per dataset kind.

Every document carries an ``id`` derived from where it came from (source file + offset, or URL + record
offset), its ``text`` and provenance. Stages add columns; they never drop these. The base schema of a kind is
checked whenever a shard is read, so a stage that loses provenance fails loudly, naming the shard.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

#: Columns every record of every kind has.
BASE_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("text", pa.string()),
    pa.field("source_file", pa.string()),
    pa.field("source_offset", pa.int64()),
]

#: Extra provenance per dataset kind.
KIND_FIELDS = {
    "code": [
        pa.field("repo", pa.string()),
        pa.field("path", pa.string()),
        pa.field("license", pa.string()),
        pa.field("blob_id", pa.string()),
        pa.field("language", pa.string()),
    ],
    "web": [
        pa.field("url", pa.string()),
        pa.field("license", pa.string()),
    ],
}

#: Columns added to rejected rows.
REJECT_FIELDS = [
    pa.field("reason", pa.string(), nullable=False),
    pa.field("stage", pa.string(), nullable=False),
    pa.field("detail", pa.string()),
]


class SchemaError(ValueError):
    """A shard lacks a required column or has it with the wrong type."""


def base_schema(kind: str) -> pa.Schema:
    if kind not in KIND_FIELDS:
        raise SchemaError(f"unknown dataset kind {kind!r}; known: {sorted(KIND_FIELDS)}")
    return pa.schema(BASE_FIELDS + KIND_FIELDS[kind])


def check_schema(schema: pa.Schema, kind: str, where: str) -> None:
    """Raise SchemaError naming ``where`` if ``schema`` lacks a base column of ``kind`` (extra columns are fine)."""
    for field in base_schema(kind):
        idx = schema.get_field_index(field.name)
        if idx < 0:
            raise SchemaError(f"{where}: missing column {field.name!r} required for kind {kind!r}")
        got = schema.field(idx).type
        if got != field.type and not (pa.types.is_large_string(got) and pa.types.is_string(field.type)):
            raise SchemaError(f"{where}: column {field.name!r} has type {got}, expected {field.type}")


def make_id(source: str, offset: int | str) -> str:
    """A deterministic 20-hex-char id from a source locator and an offset within it (a locator that is not valid
    Unicode, e.g. a file name of undecodable bytes, still gets its own id)."""
    return hashlib.blake2b(f"{source}#{offset}".encode("utf-8", "surrogatepass"), digest_size=10).hexdigest()


def _encodable(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def clean_row(row: dict) -> dict:
    """A source's row as Arrow can store it: a string holding a lone surrogate (JSON's ``"\\ud800"``, a file name
    of undecodable bytes) is not Unicode text and cannot be written; it is kept escaped (``\\ud800``) and the row is
    rejected as ``undecodable`` naming the field (the content itself is dropped)."""
    bad = [k for k, v in row.items() if isinstance(v, str) and not _encodable(v)]
    if not bad:
        return row
    row = dict(row)
    for k in bad:
        row[k] = row[k].encode("utf-8", "backslashreplace").decode("utf-8")
    if row.get("reason") is None:
        row["reason"] = "undecodable"
        row["detail"] = f"lone surrogate (not Unicode text) in {', '.join(bad)}"
    if "text" in bad:
        row["text"] = None
    return row


def empty_table(kind: str) -> pa.Table:
    return base_schema(kind).empty_table()


def conform(table: pa.Table, kind: str) -> pa.Table:
    """Cast the base columns of ``table`` to the kind's types, adding missing provenance columns as nulls."""
    schema = base_schema(kind)
    for field in schema:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(len(table), field.type))
        else:
            i = table.column_names.index(field.name)
            if table.schema.field(i).type != field.type:
                table = table.set_column(i, field, table.column(i).cast(field.type))
    base = [f.name for f in schema]
    return table.select(base + [c for c in table.column_names if c not in base])
