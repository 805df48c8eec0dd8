"""Run-time loading of the ZeroBus wire messages and of client record descriptors.

The emulator never uses generated ``_pb2`` modules: it compiles the repository's
``proto/zerobus.proto`` into a FileDescriptorSet with ``protoc-c`` (the same
compiler the C extension is built with) and builds message classes from it, so
the C client and the emulator read one definition and cannot drift apart.
"""

import os
import subprocess
import tempfile

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "databricks.zerobus"
PROTO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "proto")


class WireMessages:
    """The message classes of ``databricks.zerobus``, built from proto/zerobus.proto."""

    def __init__(self, proto_dir=PROTO_DIR, compiler="protoc-c"):
        file_set = descriptor_pb2.FileDescriptorSet()
        file_set.ParseFromString(_compile_descriptor_set(proto_dir, compiler))
        pool = descriptor_pool.DescriptorPool()
        for file_proto in file_set.file:
            pool.Add(file_proto)
        factory = message_factory.MessageFactory(pool)

        def message(name):
            return factory.GetPrototype(pool.FindMessageTypeByName(PACKAGE + "." + name))

        self.EphemeralStreamRequest = message("EphemeralStreamRequest")
        self.EphemeralStreamResponse = message("EphemeralStreamResponse")
        record_type = pool.FindEnumTypeByName(PACKAGE + ".RecordType")
        self.RECORD_TYPE_PROTO = record_type.values_by_name["PROTO"].number
        self.RECORD_TYPE_JSON = record_type.values_by_name["JSON"].number
        self.record_type_names = {v.number: v.name for v in record_type.values}


def _compile_descriptor_set(proto_dir, compiler):
    """Return the serialized FileDescriptorSet of zerobus.proto and its imports."""
    with tempfile.TemporaryDirectory(prefix="zb-proto-") as tmp:
        out = os.path.join(tmp, "zerobus.desc")
        subprocess.run(
            [compiler, "--proto_path=" + proto_dir, "--descriptor_set_out=" + out,
             "--include_imports", "zerobus.proto"],
            check=True, capture_output=True)
        with open(out, "rb") as f:
            return f.read()


class DescriptorError(ValueError):
    """The DescriptorProto a client sent cannot be used."""


def record_class_from_descriptor(serialized):
    """Build a message class from a serialized ``google.protobuf.DescriptorProto``.

    The descriptor is wrapped in a proto2 file of its own in a fresh pool, so
    nothing the client sends can collide with the emulator's own messages.
    Raises DescriptorError when the bytes are not a usable descriptor.
    """
    proto = descriptor_pb2.DescriptorProto()
    try:
        proto.ParseFromString(serialized)
    except Exception as exc:  # DecodeError and friends
        raise DescriptorError("descriptor_proto is not a valid DescriptorProto: %s" % exc) from exc
    if not proto.name:
        raise DescriptorError("descriptor_proto has no message name")
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="zerobus_client_record.proto", package="zerobus_client", syntax="proto2")
    file_proto.message_type.add().CopyFrom(proto)
    pool = descriptor_pool.DescriptorPool()
    try:
        pool.Add(file_proto)
        desc = pool.FindMessageTypeByName("zerobus_client." + proto.name)
    except Exception as exc:  # TypeError from the C++ descriptor builder
        raise DescriptorError("descriptor_proto does not build: %s" % exc) from exc
    return message_factory.MessageFactory(pool).GetPrototype(desc)
