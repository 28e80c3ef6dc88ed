# Sourced by scripts/test.sh: starts the Debian PostgreSQL cluster on 127.0.0.1 and creates a test
# role and database, then exports NEARMISS_TEST_POSTGRES_URL for the test suite.
pg_version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
if ! pg_lsclusters -h 2>/dev/null | grep -q "^$pg_version main"; then
  pg_createcluster "$pg_version" main >/dev/null
fi
pg_ctlcluster "$pg_version" main start 2>/dev/null || true
for _ in $(seq 1 30); do
  pg_isready -h 127.0.0.1 -q && break
  sleep 0.5
done
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_roles WHERE rolname='nearmiss'\"" | grep -q 1 \
  || su postgres -c "psql -q -c \"CREATE ROLE nearmiss LOGIN PASSWORD 'nearmiss' CREATEDB\""
# The tests drop each test database WITH (FORCE); an autovacuum worker still on it belongs to the
# superuser, and only a member of pg_signal_backend may end it.
su postgres -c "psql -q -c \"SET client_min_messages = warning; GRANT pg_signal_backend TO nearmiss\"" >/dev/null
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='nearmiss_test'\"" | grep -q 1 \
  || su postgres -c "psql -q -c \"CREATE DATABASE nearmiss_test OWNER nearmiss\""
export NEARMISS_TEST_POSTGRES_URL="postgresql+psycopg://nearmiss:nearmiss@127.0.0.1:5432/nearmiss_test"
