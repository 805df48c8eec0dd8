-- zerobus_fdw 0.1 -> 0.2 (ALTER EXTENSION zerobus_fdw UPDATE).
--
-- Every SQL change made to extension/*.sql since 0.1 (frozen in
-- extension/versions/zerobus_fdw--0.1.sql) is also written here, so that an
-- updated installation ends with exactly the objects of a fresh 0.2 install.
-- sql/000_update.sql checks that, object by object (docs/DESIGN.md, "Versions").
-- Append each change under a comment naming its part of extension/.
\echo Use "ALTER EXTENSION zerobus_fdw UPDATE TO '0.2'" to load this file. \quit
