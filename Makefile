# zerobus_fdw: PGXS build.
#
#   make                  build (generates protobuf-c sources from proto/)
#   make install          install into the PostgreSQL found by pg_config
#   make installcheck     pg_regress and TAP against the installed PostgreSQL (each
#                         starts its own temporary server and the emulator)
#   make deps             install the Debian packages the build, tests and demo need
#   ./scripts/test.sh     everything, on PostgreSQL 15 and 18: deps, build with
#                         -Werror, install, pg_regress, TAP, emulator tests

EXTENSION   = zerobus_fdw
EXTVERSION  = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big  = zerobus_fdw
PROTO_SRCS  = proto/zerobus.proto \
              proto/google/protobuf/duration.proto \
              proto/google/protobuf/descriptor.proto
PROTO_GEN_C = $(PROTO_SRCS:.proto=.pb-c.c)
PROTO_GEN_H = $(PROTO_SRCS:.proto=.pb-c.h)
OBJS        = zerobus_fdw.o \
              $(patsubst %.c,%.o,$(sort $(wildcard src/*.c))) \
              $(PROTO_GEN_C:.c=.o)

# The current version's install script is generated from extension/*.sql;
# released versions are frozen in extension/versions/ and every later SQL
# change ships as an update script in extension/updates/ (docs/DESIGN.md).
DATA_built  = $(EXTENSION)--$(EXTVERSION).sql
DATA        = $(patsubst $(srcdir)/%,%,$(sort $(wildcard $(srcdir)/extension/versions/*.sql \
                                                     $(srcdir)/extension/updates/*.sql)))
EXTRA_CLEAN = $(PROTO_GEN_C) $(PROTO_GEN_H)

PG_CPPFLAGS = -I$(srcdir)/src -I$(srcdir)/proto -DZEROBUS_FDW_VERSION=\"$(EXTVERSION)\"
# Warnings on, but not fatal: a newer compiler's new warning must not break
# a user's build.  scripts/test.sh builds with COPT=-Werror.
PG_CFLAGS   = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
              -Wno-sign-compare
SHLIB_LINK  = -lcurl -lprotobuf-c

# pg_regress: a temporary instance with the library preloaded (test/regress.conf),
# next to the emulator, which test/with_emulator.sh starts around pg_regress
# (see pg_regress_installcheck below).
REGRESS      = $(sort $(basename $(notdir $(wildcard $(srcdir)/sql/*.sql))))
REGRESS_OPTS = --temp-instance=$(CURDIR)/tmp_check_regress \
               --temp-config=$(srcdir)/test/regress.conf \
               --port=$(or $(ZB_REGRESS_PORT),55432)

TAP_TESTS   = 1

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# after the include: Makefile.global resets PROVE_FLAGS
PROVE_FLAGS = -I $(srcdir)/test/perl

# installcheck's pg_regress runs with the emulator up (the TAP tests start
# their own); it needs /usr/bin/python3 with grpcio, protobuf and sqlglot.
# (PGXS's definition, 15 to 18, with the emulator's wrapper in front.)
pg_regress_installcheck = $(srcdir)/test/with_emulator.sh \
    $(top_builddir)/src/test/regress/pg_regress --inputdir=$(srcdir) --bindir='$(bindir)' \
    $(pg_regress_locale_flags) $(EXTRA_REGRESS_OPTS)

# The install script is built from per-subsystem parts, in name order.
INSTALL_PARTS = $(sort $(wildcard $(srcdir)/extension/*.sql))
$(EXTENSION)--$(EXTVERSION).sql: $(INSTALL_PARTS)
	( echo '-- zerobus_fdw $(EXTVERSION), generated from the files in extension/: edit those'; \
	  printf '%s\n' '\echo Use "CREATE EXTENSION zerobus_fdw" to load this file. \quit'; \
	  for f in $(INSTALL_PARTS); do echo; echo "-- $$(basename $$f)"; grep -v '^\\echo' $$f; done ) > $@

%.pb-c.c %.pb-c.h: %.proto
	protoc-c --proto_path=$(srcdir)/proto --c_out=$(srcdir)/proto $<

# protoc-c's oneof initializers trip -Wmissing-braces; the code is generated, not ours.
$(PROTO_GEN_C:.c=.o): override CFLAGS += -Wno-missing-braces

# PGXS does not track header dependencies: every object depends on every
# header, generated ones included, so that a changed struct rebuilds all.
$(OBJS): $(PROTO_GEN_H) $(wildcard $(srcdir)/src/*.h)

.PHONY: deps regress tap emulator-test
deps:
	$(srcdir)/scripts/deps.sh

# pg_regress only (PGXS's installcheck would run the TAP tests too).
regress:
	$(MAKE) installcheck TAP_TESTS=

tap:
	$(prove_installcheck)

emulator-test:
	cd $(srcdir) && /usr/bin/python3 -m unittest discover -s emulator/tests -v
