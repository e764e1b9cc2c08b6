"""Every private attribute of Ray and Optuna that sparsetune reads or writes, in one place.

Neither library offers a public way to do these few things (reconcile a restored searcher's study
after the driver was killed, put this run's callbacks into a restored Tuner, tag a running Optuna
trial from outside it, set a trial's attributes in one transaction, find the Ray address `ray
start` left behind, start a local Ray without the processes a sweep does not use), so each is one
small named function here. Each access
checks the installed version first and then the attribute itself, and raises `PrivateApiChanged`
naming both when the pinned stack has moved: a clear error at the first use rather than a wrong
sweep. tests/search/test_private_api.py and test_local_ray.py call every function on the
installed versions, so an upgrade that drops an attribute fails there first.

Written against ray 2.60 and optuna 5.0 (`WRITTEN_FOR`). Other minor versions of the same major
version are accepted when the attributes are present (the attribute check below decides); a newer
major version is refused at once, attributes or not, since their meaning may have changed.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from importlib.metadata import version
from typing import Any

WRITTEN_FOR = {"ray": (2, 60), "optuna": (5, 0)}
MODULE = "sparsetune/search/private_api.py"


class PrivateApiChanged(RuntimeError):
    """An installed Ray or Optuna no longer has a private attribute sparsetune relies on."""


def written_for(library: str) -> str:
    """E.g. "ray 2.60": the version this module's accessors were written against."""
    major, minor = WRITTEN_FOR[library]
    return f"{library} {major}.{minor}"


def _advice(library: str) -> str:
    major, minor = WRITTEN_FOR[library]
    return f"Install {library}=={major}.{minor}.* or update {MODULE}"


@cache
def check_version(library: str) -> str:
    """The installed version of `library` (ray or optuna); PrivateApiChanged when its major
    version is newer than the one this module was written against."""
    installed = version(library)
    if int(installed.split(".")[0]) > WRITTEN_FOR[library][0]:
        raise PrivateApiChanged(
            f"{library} {installed} is installed; sparsetune reads private attributes of "
            f"{library} written against {written_for(library)}.x and does not know whether they "
            f"still mean the same. {_advice(library)}"
        )
    return installed


def _missing(library: str, owner: str, attribute: str) -> PrivateApiChanged:
    return PrivateApiChanged(
        f"{library} {check_version(library)} has no {owner}.{attribute}, a private attribute "
        f"sparsetune relies on (written against {written_for(library)}.x). {_advice(library)}"
    )


def _get(library: str, obj: Any, attribute: str, owner: str | None = None) -> Any:
    check_version(library)
    try:
        return getattr(obj, attribute)
    except AttributeError:
        raise _missing(library, owner or type(obj).__name__, attribute) from None


# -- Ray's OptunaSearch -----------------------------------------------------------------------
def searcher_study(searcher: Any) -> Any:
    """The `optuna.Study` an `OptunaSearch` asks and tells (`_ot_study`)."""
    return _get("ray", searcher, "_ot_study")


def searcher_trials(searcher: Any) -> dict[str, Any]:
    """Ray trial id -> the `optuna.Trial` asked for it (`_ot_trials`), the searcher's own map."""
    return _get("ray", searcher, "_ot_trials")


def searcher_told(searcher: Any, ray_trial_id: str) -> bool:
    """Whether the searcher has told the study the end of this Ray trial (`_completed_trials`)."""
    return ray_trial_id in _get("ray", searcher, "_completed_trials")


def mark_searcher_told(searcher: Any, ray_trial_id: str) -> None:
    """Record that this Ray trial's end is told, so that the searcher never tells it again."""
    _get("ray", searcher, "_completed_trials").add(ray_trial_id)


# -- Optuna -----------------------------------------------------------------------------------
def set_trial_user_attr(study: Any, trial: Any, key: str, value: Any) -> None:
    """Set a user attribute on a trial of `study` given as a `FrozenTrial` (one read from
    `study.get_trials`, e.g. a RUNNING trial no one holds the live `Trial` of): through the
    study's storage (`study._storage`) and the trial's storage id (`FrozenTrial._trial_id`)."""
    storage = _get("optuna", study, "_storage")
    storage.set_trial_user_attr(_get("optuna", trial, "_trial_id"), key, value)


def set_trial_attrs(
    trial: Any, user_attrs: Mapping[str, Any], constraints: Mapping[str, float]
) -> None:
    """Set user attributes and constraint values on a live `optuna.Trial`, as its
    `set_user_attr` and `set_constraint` would, in one transaction where the study's storage is
    relational (`RDBStorage`, behind Optuna's cache): one commit and session, not one or two per
    attribute (on SQLite 7.7 ms a trial became 2.9, `benchmarks/driver_work.py`; a sweep's
    driver pays it for every trial).
    Other storages take one call each. Reaches `_CachedStorage._backend`,
    `RDBStorage._set_trial_attr_without_commit`, the storage's session maker and the constraints'
    system attribute key."""
    import optuna
    from optuna.storages._rdb import models
    from optuna.storages._rdb import storage as rdb
    from optuna.study import _constrained_optimization as constrained

    constraint_key = _get("optuna", constrained, "_CONSTRAINTS_KEY", constrained.__name__)
    values = {}
    for name, value in constraints.items():
        value = float(value)
        if math.isnan(value):  # as set_constraint refuses it
            raise ValueError(f"Attempted to set a constraint for {name!r}, but NaN is not allowed.")
        values[f"{constraint_key}:{name}"] = value
    backend = getattr(trial.storage, "_backend", trial.storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        for key, value in user_attrs.items():
            trial.set_user_attr(key, value)
        for name, value in constraints.items():
            trial.set_constraint(name, value)
        return
    trial_id = _get("optuna", trial, "_trial_id")
    write = _get("optuna", backend, "_set_trial_attr_without_commit")
    scoped = _get("optuna", rdb, "_create_scoped_session", "optuna.storages._rdb.storage")
    with scoped(_get("optuna", backend, "scoped_session")) as session:
        for key, value in user_attrs.items():
            write(session, models.TrialUserAttributeModel, trial_id, key, value)
        for key, value in values.items():
            write(session, models.TrialSystemAttributeModel, trial_id, key, value)
    cached = _get("optuna", trial, "_cached_frozen_trial")  # what the live trial shows
    cached.user_attrs.update(user_attrs)
    cached.system_attrs.update(values)


# -- Ray Tune's Tuner -------------------------------------------------------------------------
def _local_tuner(tuner: Any) -> Any:
    internal = _get("ray", tuner, "_local_tuner")
    if internal is None:
        raise _missing("ray", type(tuner).__name__, "_local_tuner")
    return internal


def tuner_run_config(tuner: Any) -> Any:
    """The `RunConfig` a Tuner holds (restored: the one saved with the experiment)."""
    return _local_tuner(tuner).get_run_config()


def replace_tuner_configs(tuner: Any, tune_config: Any, run_config: Any) -> None:
    """Make a restored Tuner run with these configs (this process's searcher, scheduler,
    callbacks and stoppers) instead of the copies pickled when the sweep first started: Ray has
    no public setter (`TunerInternal._tune_config`, `._run_config`)."""
    internal = _local_tuner(tuner)
    for attribute in ("_run_config", "_tune_config"):  # both checked before either is replaced
        _get("ray", internal, attribute)
    internal._run_config = run_config
    internal._tune_config = tune_config


# -- Ray's cluster address --------------------------------------------------------------------
def ray_address_from_environment(address: str = "auto") -> str:
    """The address `ray.init(address)` would join: RAY_ADDRESS, else (for "auto") the cluster
    `ray start` left on this machine. ConnectionError when there is none
    (`ray._private.services.get_ray_address_from_environment`)."""
    check_version("ray")
    try:
        from ray._private import services
    except ImportError:
        raise _missing("ray", "ray", "_private.services") from None
    owner = "ray._private.services"
    find = _get("ray", services, "get_ray_address_from_environment", owner)
    return find(address, None)


# -- Ray's cloudpickle ------------------------------------------------------------------------
def pickled_class_ids() -> list[str]:
    """The ids cloudpickle (as Ray ships it) drew for classes it pickled by value in this process
    (a class defined in a script or notebook): drawn at random once per process, so a content
    hash leaves them out (`search.objects`). Read from its private tracker table under its lock."""
    from ray.cloudpickle import cloudpickle as module

    owner = "ray.cloudpickle.cloudpickle"
    lock = _get("ray", module, "_DYNAMIC_CLASS_TRACKER_LOCK", owner)
    drawn = _get("ray", module, "_DYNAMIC_CLASS_TRACKER_BY_ID", owner)
    with lock:
        return [key for key in drawn if isinstance(key, str)]


# -- Ray's local node -------------------------------------------------------------------------
# The modules a process's first `ray.init` imports (about 200 with their own: Ray's usage
# stats, the dashboard's optional dependencies with aiohttp, grpc, opentelemetry and prometheus,
# the uv runtime-env hook), and `prestart_workers` after it (its gRPC stub and channel).
# test_local_ray.py checks that none is left to import.
RAY_START_MODULES = (
    "ray._common.usage.usage_lib",
    "ray.dashboard.optional_deps",
    "ray._private.runtime_env.uv_runtime_env_hook",
    "ray._private.grpc_utils",
    "ray._private.authentication.grpc_authentication_client_interceptor",
    "ray.core.generated.node_manager_pb2_grpc",
    "grpc._channel",
    "grpc._interceptor",
    "grpc._simple_stubs",
    "grpc.experimental",
)


def import_ray_start_modules() -> None:
    """Import what `ray.init` and `prestart_workers` would import on their first call, so that
    they import nothing while another thread of this process imports (MLflow imports
    opentelemetry too; two threads importing one package at once can meet Python's import-lock
    deadlock detection, which raises in one of them)."""
    check_version("ray")
    for name in RAY_START_MODULES:
        if importlib.util.find_spec(name) is None:
            package, _, module = name.rpartition(".")
            raise _missing("ray", package, module)
        # one whose optional dependency is missing (a minimal Ray) is left to ray.init, which
        # goes on without it
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


_NODE_WAIT_POLL_S = 0.02


@contextlib.contextmanager
def lean_local_node() -> Iterator[None]:
    """While on, a local Ray that `ray.init` starts has only what a sweep uses, and `ray.init`
    returns as soon as its raylet has registered. Left out: the dashboard head (started even with
    `include_dashboard=False`, and waited on until it publishes an address), the autoscaler
    monitor (a local node has nothing to scale) and the log monitor (sweeps take no worker logs).
    Ray's own wait for the raylet asks the GCS once a second (`GlobalStateAccessor::GetNode`);
    this one every 20 ms. On this project's 2-core machine `ray.init` takes 1.2-1.3 s instead of
    2.4-3.4 and `ray.shutdown` 0.1-0.3 s instead of 1.1-1.4 (benchmarks/README.md). Only a head
    node is changed: joining a cluster is as before. (`ray._private.node.Node.__init__`,
    `.start_api_server`, `RayParams.no_monitor`, `.include_log_monitor`,
    `ray._private.services.get_node`.)"""
    check_version("ray")
    try:
        from ray._private import node as ray_node
        from ray._private import services
        from ray._private.parameter import RayParams
        from ray._raylet import GcsClient, NodeID
        from ray.core.generated.gcs_service_pb2 import GetAllNodeInfoRequest
    except ImportError as error:
        raise _missing("ray", "ray", str(error.name)) from None
    node_class = ray_node.Node
    owner = "ray._private.node.Node"
    start_node = _get("ray", node_class, "__init__", owner)
    _get("ray", node_class, "start_api_server", owner)
    get_node = _get("ray", services, "get_node", "ray._private.services")
    params = RayParams()
    for attribute in ("no_monitor", "include_log_monitor"):
        _get("ray", params, attribute, "ray._private.parameter.RayParams")

    def start_lean_node(self, ray_params, head=False, *args, **kwargs):
        if head:
            ray_params.no_monitor = True
            ray_params.include_log_monitor = False
            self.start_api_server = lambda **_: None  # this node only
        start_node(self, ray_params, head, *args, **kwargs)

    def get_node_when_registered(gcs_address: str, node_id: str):
        client = GcsClient(address=gcs_address)
        node_info = _get("ray", client, "get_all_node_info", "ray._raylet.GcsClient")
        selector = GetAllNodeInfoRequest.NodeSelector(node_id=NodeID.from_hex(node_id).binary())
        deadline = time.monotonic() + 30  # Ray's own wait for a raylet
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the GCS still starting: ask again
                if node_info(timeout=5, node_selectors=[selector]):
                    break
            time.sleep(_NODE_WAIT_POLL_S)
        return get_node(gcs_address, node_id)  # Ray's, now without its one-second wait

    node_class.__init__ = start_lean_node
    services.get_node = get_node_when_registered
    try:
        yield
    finally:
        node_class.__init__ = start_node
        services.get_node = get_node


_WITHOUT_ENV = threading.Lock()
_without_env_users = 0
_tune_env_defaults: dict[str, Any] = {}


@contextlib.contextmanager
def trial_actors_on_started_workers() -> Iterator[None]:
    """While on, Ray Tune starts trial actors without a runtime env. Tune gives each trial actor
    one of its own (`PL_DISABLE_FORK` for PyTorch Lightning, and AWS and Ray Train variables of
    this process: `ray.tune.execution.class_cache`), so a trial never runs in the workers Ray
    started ahead, one per CPU, and waits for a new one to start (a process, Ray's runtime env
    agent). For a Ray this process started those workers inherit this process's environment
    anyway, so the variables are there; Lightning's fork setting is not. Sweeps of one process
    may overlap (`search_async`): Tune's defaults come back when the last one ends."""
    global _without_env_users
    from ray.tune.execution import class_cache

    owner = "ray.tune.execution.class_cache"
    with _WITHOUT_ENV:
        if _without_env_users == 0:
            for name in ("DEFAULT_ENV_VARS", "ENV_VARS_TO_PROPAGATE"):
                _tune_env_defaults[name] = _get("ray", class_cache, name, owner)
            class_cache.DEFAULT_ENV_VARS = {}
            class_cache.ENV_VARS_TO_PROPAGATE = set()
        _without_env_users += 1
    try:
        yield
    finally:
        with _WITHOUT_ENV:
            _without_env_users -= 1
            if _without_env_users == 0:
                for name, value in _tune_env_defaults.items():
                    setattr(class_cache, name, value)


# -- Ray's raylet -----------------------------------------------------------------------------
def worker_options(preload: Sequence[str], own_prestart: bool = True) -> dict[str, Any]:
    """`ray.init` keywords for a local Ray whose Python workers import `preload` as they start,
    before they take work (the raylet's `preload_python_modules`, through `_system_config`).
    Without `own_prestart` the raylet starts no worker ahead by itself (`enable_worker_prestart`,
    `prestart_worker_first_driver`): those it does start belong to no job yet, and it ends one
    that waited a second or two idle, so a trial that comes later starts a new one; the caller
    starts them with `prestart_workers`, kept waiting."""
    check_version("ray")
    config: dict[str, Any] = {"preload_python_modules": list(preload)} if preload else {}
    if not own_prestart:
        config |= {"enable_worker_prestart": False, "prestart_worker_first_driver": False}
    return {"_system_config": config} if config else {}


def prestart_workers(count: int, keep_alive_s: int) -> None:
    """Ask this node's raylet to start `count` Python workers for this job now, and to keep them
    idle for up to `keep_alive_s` (`NodeManagerService.PrestartWorkers`, an RPC Ray's own tasks
    use and its Python API does not offer). An actor created later takes such a worker instead
    of waiting for a new process."""
    check_version("ray")
    import ray

    try:
        from ray._private.grpc_utils import init_grpc_channel
        from ray.core.generated import common_pb2, node_manager_pb2, runtime_environment_pb2
        from ray.core.generated.node_manager_pb2_grpc import NodeManagerServiceStub
    except ImportError as error:
        raise _missing("ray", "ray", str(error.name)) from None
    context = ray.get_runtime_context()
    node = next(n for n in ray.nodes() if n["NodeID"] == context.get_node_id())
    request = node_manager_pb2.PrestartWorkersRequest(
        language=common_pb2.PYTHON,
        job_id=bytes.fromhex(context.get_job_id()),
        # "{}": no runtime env, as a trial actor has (`trial_actors_on_started_workers`)
        runtime_env_info=runtime_environment_pb2.RuntimeEnvInfo(serialized_runtime_env="{}"),
        keep_alive_duration_secs=keep_alive_s,
        num_workers=count,
    )
    channel = init_grpc_channel(f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}")
    try:
        NodeManagerServiceStub(channel).PrestartWorkers(request, timeout=10)
    finally:
        channel.close()
