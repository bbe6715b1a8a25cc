# SPDX-License-Identifier: AGPL-3.0-or-later
"""pytest fixtures shared by every integration test of idbridge.

The servers come from the environment set by `deploy/dev test`:
IDBRIDGE_TEST_PG_URL, IDBRIDGE_TEST_REDIS_URL, IDBRIDGE_TEST_BUILD_DIR.

Fixtures (scope):
  idb_env (session)              -> Env(pg_url, redis_url, build_dir)
  db_url (module)                -> URL of a fresh database idb_t_<random>, dropped at teardown
  new_database (function)        -> factory(): another fresh database URL, dropped at teardown
  redis_url (module)             -> the shared Redis URL, FLUSHALLed at module setup
  redis (function)               -> idbtest.Redis client on the shared Redis
  make_private_redis (function)  -> factory(port=None) -> started idbtest.PrivateRedis
  private_redis (function)       -> one started idbtest.PrivateRedis
  daemon (module)                -> a started idbtest.Daemon on db_url + shared Redis
  make_daemon (function)         -> factory(config=None, env=None, db_url=None, redis_url=None,
                                    public_url=None, start=True, secret_key=None)
                                    -> idbtest.Daemon (daemons on one database share
                                    one secret key file, created by the first daemon)
  acme (module)                  -> idbtest.Org: org `acme` ("Acme") + admin admin@acme.test
  admin_login (module)           -> idbtest.Login of acme's admin on `daemon`
  ctl (module)                   -> daemon.ctl
Every daemon a fixture started is stopped at teardown, asserting exit code 0
and no sanitizer report. Tests get a SIGALRM timeout (default 120 s; override
with @pytest.mark.timeout(seconds)).
"""

import os
import signal
import sys
from collections import namedtuple
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import idbtest  # noqa: E402

Env = namedtuple("Env", "pg_url redis_url build_dir")

DEFAULT_TIMEOUT_S = 120

_HOW_TO_RUN = ("run the integration tests with `deploy/dev test`, or start the servers with "
               "`deploy/dev services` and export the variables it prints")


def _usage_exit(msg):
    pytest.exit(f"idbridge integration tests: {msg}; {_HOW_TO_RUN}", returncode=4)


@pytest.fixture(scope="session")
def idb_env():
    missing = [v for v in ("IDBRIDGE_TEST_PG_URL", "IDBRIDGE_TEST_REDIS_URL")
               if not os.environ.get(v)]
    if missing:
        _usage_exit(f"{' and '.join(missing)} not set")
    build = os.environ.get("IDBRIDGE_TEST_BUILD_DIR") or str(idbtest.REPO / "build")
    build_dir = Path(build).resolve()
    for exe in ("idbridge", "idbridgectl"):
        if not os.access(build_dir / exe, os.X_OK):
            _usage_exit(f"{build_dir / exe} is missing or not executable "
                        "(set IDBRIDGE_TEST_BUILD_DIR to the build directory)")
    pg_url = os.environ["IDBRIDGE_TEST_PG_URL"]
    redis_url = os.environ["IDBRIDGE_TEST_REDIS_URL"]
    try:
        idbtest.pg_connect(pg_url).close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        _usage_exit(f"cannot connect to PostgreSQL at {pg_url}: {exc}")
    try:
        assert idbtest.redis_command(redis_url, "PING") == "PONG"
    except Exception as exc:  # noqa: BLE001
        _usage_exit(f"cannot reach Redis at {redis_url}: {exc!r}")
    return Env(pg_url, redis_url, build_dir)


# --- timeouts ---------------------------------------------------------------


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): per-test time limit (SIGALRM)")


class TimeLimitExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def _test_timeout(request):
    m = request.node.get_closest_marker("timeout")
    seconds = int(m.args[0]) if m and m.args else DEFAULT_TIMEOUT_S

    def on_alarm(signum, frame):
        raise TimeLimitExceeded(f"{request.node.nodeid} exceeded {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --- PostgreSQL -------------------------------------------------------------


@pytest.fixture(scope="module")
def db_url(idb_env):
    url = idbtest.create_database(idb_env.pg_url)
    yield url
    idbtest.drop_database(idb_env.pg_url, url)


@pytest.fixture
def new_database(idb_env):
    made = []

    def factory():
        url = idbtest.create_database(idb_env.pg_url)
        made.append(url)
        return url

    yield factory
    for url in made:
        idbtest.drop_database(idb_env.pg_url, url)


# --- Redis ------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url(idb_env):
    # Modules run one after another against the same server: start clean.
    idbtest.redis_command(idb_env.redis_url, "FLUSHALL")
    return idb_env.redis_url


@pytest.fixture
def redis(redis_url):
    with idbtest.Redis.from_url(redis_url) as r:
        yield r


@pytest.fixture
def make_private_redis(tmp_path_factory):
    started = []

    def factory(port=None):
        r = idbtest.PrivateRedis(tmp_path_factory.mktemp("redis"), port=port)
        started.append(r)
        return r.start()

    yield factory
    for r in started:
        r.stop()


@pytest.fixture
def private_redis(make_private_redis):
    return make_private_redis()


# --- daemons ----------------------------------------------------------------


class _DaemonPool:
    """Starts daemons and stops them all at teardown; sanitizer reports and
    bad exit codes fail the owning test (as a teardown error)."""

    def __init__(self, idb_env, tmp_path_factory, db_url, redis_url, keys_dir):
        self.env = idb_env
        self.tmp = tmp_path_factory
        self.db_url = db_url
        self.redis_url = redis_url
        self.keys_dir = keys_dir
        self.daemons = []

    def __call__(self, config=None, env=None, db_url=None, redis_url=None,
                 public_url=None, start=True, secret_key=None):
        db_url = db_url or self.db_url
        # One secret key per database, like the instances of one deployment.
        key_file = self.keys_dir / (idbtest.db_name(db_url) + ".key")
        d = idbtest.Daemon(self.env.build_dir, self.tmp.mktemp("idbridge"),
                           db_url, redis_url or self.redis_url,
                           config=config, env=env, public_url=public_url,
                           secret_key_file=key_file, secret_key=secret_key)
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def close(self):
        errors = []
        for d in self.daemons:
            try:
                d.stop()
            except AssertionError as exc:
                errors.append(str(exc))
            finally:
                d.kill()
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture(scope="session")
def _keys_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("secret-keys")


@pytest.fixture
def make_daemon(idb_env, tmp_path_factory, db_url, redis_url, _keys_dir):
    pool = _DaemonPool(idb_env, tmp_path_factory, db_url, redis_url, _keys_dir)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def _module_daemons(idb_env, tmp_path_factory, db_url, redis_url, _keys_dir):
    pool = _DaemonPool(idb_env, tmp_path_factory, db_url, redis_url, _keys_dir)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def daemon(_module_daemons):
    return _module_daemons()


@pytest.fixture(scope="module")
def ctl(daemon):
    return daemon.ctl


@pytest.fixture(scope="module")
def acme(daemon):
    idbtest.create_org(daemon, "acme", "Acme")
    email = "admin@acme.test"
    password = idbtest.create_admin(daemon, "acme", email)
    return idbtest.Org(daemon, "acme", "Acme", email, password)


@pytest.fixture(scope="module")
def admin_login(daemon, acme):
    return acme.login_admin()
