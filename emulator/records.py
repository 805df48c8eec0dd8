"""Decoding and validation of ZeroBus records against a table's schema.

A decoder turns the records of one request into rows in stored form (see
deltatypes) or raises RecordError naming the offending record's index; the
service then rejects the whole batch, as the real service does.
"""

import json

from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

from deltatypes import ValueRejected, store_json, store_native
from protos import DescriptorError, record_class_from_descriptor

FDP = descriptor_pb2.FieldDescriptorProto
INT32_TYPES = {FDP.TYPE_INT32, FDP.TYPE_SINT32, FDP.TYPE_SFIXED32}
INT64_TYPES = {FDP.TYPE_INT64, FDP.TYPE_SINT64, FDP.TYPE_SFIXED64}
ACCEPTED_FIELD_TYPES = {
    "TINYINT": INT32_TYPES | INT64_TYPES,
    "SMALLINT": INT32_TYPES | INT64_TYPES,
    "INT": INT32_TYPES | INT64_TYPES,
    "BIGINT": INT64_TYPES,
    "TIMESTAMP": INT64_TYPES,
    "TIMESTAMP_NTZ": INT64_TYPES,
    "DATE": INT32_TYPES,
    "BOOLEAN": {FDP.TYPE_BOOL},
    "FLOAT": {FDP.TYPE_FLOAT},
    "DOUBLE": {FDP.TYPE_DOUBLE},
    "STRING": {FDP.TYPE_STRING},
    "VARCHAR": {FDP.TYPE_STRING},
    "CHAR": {FDP.TYPE_STRING},
    "DECIMAL": {FDP.TYPE_STRING},
    "VARIANT": {FDP.TYPE_STRING},
    "BINARY": {FDP.TYPE_BYTES},
}
TYPE_NAMES = {v: k[5:].lower() for k, v in FDP.Type.items()}


class SchemaMismatch(ValueError):
    """The stream's descriptor or record type does not match the table."""


class RecordError(ValueError):
    """A record does not decode or violates the table's schema."""


def _reject(index, problem):
    return RecordError("Record %d of the request is invalid: %s" % (index, problem))


def _not_null_missing(columns, row, index):
    for column, value in zip(columns, row):
        if value is None and not column.nullable:
            raise _reject(index, "column %s is NOT NULL but has no value" % column.name)


class ProtoDecoder:
    """Records encoded with the client's DescriptorProto."""

    def __init__(self, table, descriptor_bytes):
        proto = descriptor_pb2.DescriptorProto()
        try:
            self.message_class = record_class_from_descriptor(descriptor_bytes)
        except DescriptorError as exc:
            raise SchemaMismatch(str(exc)) from None
        proto.ParseFromString(descriptor_bytes)
        fields = sorted(proto.field, key=lambda f: f.number)
        if not fields:
            raise SchemaMismatch("descriptor_proto %s has no fields" % proto.name)
        self.columns = []
        for field in fields:
            column = table.column(field.name)
            if column is None:
                raise SchemaMismatch("descriptor field %s is not a column of table %s"
                                     % (field.name, table.name))
            _check_field(field, column)
            self.columns.append(column)
        present = {c.name.lower() for c in self.columns}
        for column in table.columns:
            if not column.nullable and column.name.lower() not in present:
                raise SchemaMismatch("column %s of table %s is NOT NULL but the descriptor "
                                     "has no field for it" % (column.name, table.name))
        descriptor = self.message_class.DESCRIPTOR
        self._slots = {descriptor.fields_by_name[f.name]: i for i, f in enumerate(fields)}

    def decode(self, index, raw):
        """Decode one record into a stored-form row (columns as ``self.columns``)."""
        message = self.message_class()
        try:
            message.ParseFromString(raw)
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            raise _reject(index, "protobuf does not decode with the stream's descriptor: %s"
                          % exc) from None
        if message.UnknownFields():
            raise _reject(index, "protobuf has fields that are not in the stream's descriptor "
                          "(wrong field number or wire type)")
        row = [None] * len(self.columns)
        for field, value in message.ListFields():
            slot = self._slots[field]
            column = self.columns[slot]
            try:
                row[slot] = store_native(column.dtype, list(value) if
                                         field.label == field.LABEL_REPEATED else value)
            except ValueRejected as exc:
                raise _reject(index, "column %s: %s" % (column.name, exc)) from None
        _not_null_missing(self.columns, row, index)
        return row


def _check_field(field, column):
    dtype = column.dtype
    repeated = field.label == FDP.LABEL_REPEATED
    if dtype.name == "ARRAY":
        if not repeated:
            raise SchemaMismatch("field %s must be repeated for column type %s"
                                 % (field.name, dtype))
        dtype = dtype.element
    elif repeated:
        raise SchemaMismatch("field %s is repeated but column %s is %s"
                             % (field.name, column.name, dtype))
    accepted = ACCEPTED_FIELD_TYPES.get(dtype.name)
    if accepted is None:
        raise SchemaMismatch("column %s of type %s cannot be written by ZeroBus"
                             % (column.name, column.dtype))
    if field.type not in accepted:
        raise SchemaMismatch("field %s has proto type %s, which does not match column type %s "
                             "(accepted: %s)" % (field.name, TYPE_NAMES.get(field.type, field.type),
                                                 column.dtype, ", ".join(sorted(
                                                     TYPE_NAMES[t] for t in accepted))))


class JsonDecoder:
    """Records as JSON objects keyed by column name."""

    def __init__(self, table):
        self.columns = list(table.columns)
        self._table = table

    def decode(self, index, text):
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise _reject(index, "not valid JSON: %s" % exc) from None
        if not isinstance(obj, dict):
            raise _reject(index, "a JSON record must be an object")
        row = [None] * len(self.columns)
        for key, value in obj.items():
            column = self._table.column(key)
            if column is None:
                raise _reject(index, "unknown column %s" % key)
            try:
                row[column.position - 1] = store_json(column.dtype, value)
            except ValueRejected as exc:
                raise _reject(index, "column %s: %s" % (column.name, exc)) from None
        _not_null_missing(self.columns, row, index)
        return row
