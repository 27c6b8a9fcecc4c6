"""The kind-table: how a Flow, a Pod and a Pea become a `jina` command line.

flow -> `jina flow --uses <yaml>`, the user's Flow YAML with ports and paths filled in;
pod  -> `jina deployment --uses <yaml>`, a Deployment YAML written from the request;
pea  -> `jina executor --uses ... --port ...`, one Executor runtime.
Each kind validates its request, fills in ports from the daemon's range and turns relative
paths into absolute ones, so the command runs the same whatever its working directory.
Everything that can be refused is refused here, before a process starts.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable


from .errors import BadRequest, NotFound, check_plain_text, shallow
from .limits import parse_limits
from .ports import PortAllocator
from .states import Protocol, RestartPolicy
from .urls import daemon_url

if TYPE_CHECKING:
    from .remotes import RemotePart


@dataclasses.dataclass
class Launch:
    """What to run, where it answers, and how to tell that it is ready."""

    argv: list[str]
    ports: dict[str, int]
    port: int  # the one its address names
    protocol: str
    probes: list[tuple[int, str]]  # (port, "tcp" | "dry_run"): all must answer
    # Executors to start on other daemons first ({"name", "jinad", "pod": request body}); a
    # Launch that has any is prepared again once they run and `Preparation.remotes` has them.
    remote_needed: list[dict] = dataclasses.field(default_factory=list)
    # Text of a line the child prints on stdout only once it serves; probes start after it.
    ready_line: str | None = None
    # A Flow's executor replicas that run as Peas of their own (see parts.py), in order.
    parts: list[PartPlan] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class PartPlan:
    """One executor replica of a Flow, to run as a Pea of its own on a port the Flow holds."""

    name: str
    replica: int
    port: int
    spec: dict  # the Pea's request fields
    envs: dict[str, str]


@dataclasses.dataclass
class Preparation:
    """What preparing one object needs: its workspace, its run folder, its ports so far."""

    ws_root: Path
    run_dir: Path
    ports: dict[str, int]
    alloc: PortAllocator
    jina: str
    max_yaml_bytes: int
    max_yaml_depth: int
    # Executors already running on other daemons, by name.
    remotes: dict[str, RemotePart] = dataclasses.field(default_factory=dict)
    # The daemon's own certificate and key (tls_cert, tls_key), for gateways of `tls: true` Flows.
    tls_files: tuple[str, str] | None = None
    # A Flow's executors run as parts of their own (False: all inside its `jina flow`, as a
    # Flow with `limits` needs, which caps them together).
    parts: bool = True
    # What rolling updates changed, by executor name (see `PART_CHANGES`).
    changes: dict[str, dict] = dataclasses.field(default_factory=dict)
    envs: dict[str, str] = dataclasses.field(default_factory=dict)  # the Flow's request envs

    def port(self, name: str, fixed: Any) -> int:
        """The port named `name`: kept from an earlier run, fixed by the user, or taken from the range."""
        if name in self.ports:
            return self.ports[name]
        if fixed is None:
            self.ports[name] = self.alloc.take()
        elif isinstance(fixed, int) and not isinstance(fixed, bool) and 0 < fixed < 65536:
            if fixed in self.ports.values():  # not "in use on this machine": this YAML names it twice
                raise BadRequest(f"port {fixed} is given to two parts (one of them {name}); give each its own")
            self.ports[name] = self.alloc.claim(fixed)
        else:
            raise BadRequest(f"port of {name} must be a number from 1 to 65535, not {fixed!r}")
        return self.ports[name]


@functools.cache
def _tagged_loader() -> type:
    """Safe YAML that reads Jina's `!Flow`-style tags as `jtype` and builds no Python objects.
    Made (and yaml imported, ~1 MB) when the first YAML is read: an idle daemon reads none."""
    import yaml

    class TaggedLoader(yaml.SafeLoader):
        pass

    def tagged_mapping(loader: TaggedLoader, tag_suffix: str, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(None, None, f"tag !{tag_suffix} must tag a mapping", node.start_mark)
        return {"jtype": tag_suffix, **loader.construct_mapping(node, deep=True)}

    TaggedLoader.add_multi_constructor("!", tagged_mapping)
    return TaggedLoader


def _yaml_text(data: dict) -> str:
    import yaml  # see _tagged_loader

    return yaml.safe_dump(data, sort_keys=False)


def load_yaml(path: Path, label: str, max_bytes: int, max_depth: int) -> dict:
    import yaml  # see _tagged_loader

    if path.stat().st_size > max_bytes:
        raise BadRequest(f"{label} is larger than this daemon's YAML limit of {max_bytes} bytes")
    try:
        loaded = yaml.load(path.read_text(), Loader=_tagged_loader())
    except RecursionError:  # the parser recurses per level, before the depth check can run
        raise BadRequest(f"{label} nests deeper than this daemon's limit of {max_depth} levels") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{label} is not valid YAML: {' '.join(str(exc).split())[:500]}") from None
    if not isinstance(loaded, dict):
        raise BadRequest(f"{label} must be a YAML mapping")
    return shallow(loaded, max_depth, label)


class PathResolver:
    """Makes a workspace's relative paths absolute: first against the YAML's folder, then the
    workspace root (the order Jina itself uses), refusing paths that leave the workspace."""

    def __init__(self, root: Path, yaml_dir: Path | None = None) -> None:
        self.root = root.resolve()
        self.bases = [p for p in (yaml_dir, root) if p is not None]

    def file(self, name: Any, what: str) -> str:
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{what} must be a file name")
        check_plain_text(name, what)
        for base in self.bases:
            candidate = (base / name).resolve()
            if candidate.is_file():
                if not candidate.is_relative_to(self.root):
                    raise BadRequest(f"{what} {name!r} is outside the workspace")
                return str(candidate)
        raise BadRequest(f"{what} {name!r} is not a file in the workspace")

    def modules(self, value: Any, what: str) -> list[str]:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list):
            raise BadRequest(f"{what} must be a file name or a list of them")
        return [self.file(name, what) for name in names]

    def uses(self, value: Any, what: str) -> Any:
        """A YAML file in `uses` becomes absolute; a class name or hub address stays as it is."""
        if isinstance(value, str) and value.endswith((".yml", ".yaml")) and "://" not in value:
            return self.file(value, what)
        return value


def _protocol(value: Any) -> str:
    if value is None:
        return Protocol.GRPC.value
    if not isinstance(value, str) or value.lower() not in Protocol.values():
        raise BadRequest(f"protocol must be one of {', '.join(Protocol)}, not {value!r}")
    return value.lower()


def _positive(spec: dict, key: str) -> int:
    value = spec.get(key, 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest(f"{key} must be a whole number of at least 1")
    return value


# Jina's names for the same setting (its argument aliases and the deprecated names it maps).
GATEWAY_PORT_KEYS = ("port", "ports", "port_expose", "port_in")
EXECUTOR_PORT_KEYS = ("port", "ports", "port_in", "port_expose")
PROTOCOL_KEYS = ("protocol", "protocols")
# A Flow prints this (a rich Rule, on stdout) only once Flow.start() returned: every executor
# and the gateway are ready. A gateway whose Flow is aborting may bind its port for a moment.
FLOW_READY_LINE = "Flow is ready to serve"


def _pop_one(mapping: dict, keys: tuple[str, ...], what: str) -> Any:
    """The value given under any of these names of one setting (removed from the mapping);
    None when none is given. Different values under two names are refused, not guessed."""
    given = {key: mapping.pop(key) for key in keys if key in mapping}
    values = list(given.values())
    if any(value != values[0] for value in values[1:]):
        raise BadRequest(f"{what} is given twice with different values ({', '.join(given)}); give it once, as {keys[0]!r}")
    return values[0] if values else None


def gateway_port_names(protocols: list[str]) -> list[str]:
    """Names of a Flow's gateway ports in `ports`: `gateway` for the first protocol (the one
    `address` names), `gateway-<protocol>` for each other."""
    return ["gateway"] + [f"gateway-{protocol}" for protocol in protocols[1:]]


def _gateway(flow: dict, filename: str, ctx: Preparation) -> tuple[list[str], list[int]]:
    """Protocols and ports of the Flow's gateway, written into its `with:`. Jina reads them
    from `with:` and lets a top-level `gateway:` mapping override them; jinad takes them from
    either (the same way) and writes them once, so the ports it reports are the ones used."""
    gateway = flow.get("with")
    if gateway is None:
        gateway = flow["with"] = {}
    if not isinstance(gateway, dict):
        raise BadRequest(f"{filename}: 'with' must be a mapping")
    sections = [gateway]
    if isinstance(flow.get("gateway"), dict):
        sections.append(flow["gateway"])
    protocol = fixed = None
    for section in sections:  # Jina lets the later win; two different values are refused here
        given = _pop_one(section, PROTOCOL_KEYS, f"{filename}: the gateway's protocol")
        protocol = _agree(protocol, given, f"{filename}: the gateway's protocol")
        given = _pop_one(section, GATEWAY_PORT_KEYS, f"{filename}: the gateway's port")
        fixed = _agree(fixed, given, f"{filename}: the gateway's port")
    names = protocol if isinstance(protocol, list) else [protocol]
    if not names:
        raise BadRequest(f"{filename}: 'protocol' is an empty list")
    protocols = [_protocol(name) for name in names]
    if len(set(protocols)) < len(protocols):
        raise BadRequest(f"{filename}: each gateway protocol can be given once, not {protocols}")
    if fixed is None or (len(protocols) == 1 and not isinstance(fixed, list)):
        fixed_ports = [fixed] * len(protocols)
    elif isinstance(fixed, list) and len(fixed) == len(protocols):
        fixed_ports = fixed
    else:
        raise BadRequest(f"{filename}: the gateway needs one port per protocol ({len(protocols)}), not {fixed!r}")
    ports = [ctx.port(name, port) for name, port in zip(gateway_port_names(protocols), fixed_ports)]
    gateway["protocol"] = protocols if len(protocols) > 1 else protocols[0]
    gateway["port"] = ports if len(ports) > 1 else ports[0]
    return protocols, ports


def _agree(earlier: Any, later: Any, what: str) -> Any:
    """One value from `with:` and `gateway:`: either may give it, both only the same."""
    if earlier is not None and later is not None and earlier != later:
        raise BadRequest(f"{what} is given twice, as {earlier!r} and as {later!r}; give it once")
    return later if later is not None else earlier


def _executor_list(flow: dict, filename: str) -> list[dict]:
    """The Flow's executor entries, under whichever key it uses: Jina reads `executors`, or
    `deployments` when there is no `executors`."""
    if "executors" in flow and "deployments" in flow:
        raise BadRequest(f"{filename} has both 'executors' and 'deployments'; Jina would ignore 'deployments': "
                         "list every executor under one of them")
    key = "deployments" if "deployments" in flow else "executors"
    executors = flow.get(key) or []
    if not isinstance(executors, list) or not all(isinstance(e, dict) for e in executors):
        raise BadRequest(f"{filename}: '{key}' must be a list of mappings")
    for executor in executors:
        if executor.get("jtype") == "Deployment":
            raise BadRequest(f"{filename}: jinad does not run 'jtype: Deployment' entries yet; write the executor's "
                             "settings (uses, py_modules, replicas, ...) in its entry")
    flow[key] = executors
    return executors


def prepare_flow(spec: dict, ctx: Preparation) -> Launch:
    filename = spec.get("filename")
    if not isinstance(filename, str) or not filename:
        raise BadRequest("a Flow needs 'filename': the Flow YAML's path in the workspace")
    source = Path(PathResolver(ctx.ws_root).file(filename, "filename"))
    flow = load_yaml(source, filename, ctx.max_yaml_bytes, ctx.max_yaml_depth)
    if flow.get("jtype", "Flow") != "Flow":
        raise BadRequest(f"{filename} is a {flow.get('jtype')}, not a Flow (jtype: Flow)")
    protocols, gateway_ports = _gateway(flow, filename, ctx)
    gateway_names = gateway_port_names(protocols)
    tls = _flow_tls(spec, flow, filename, ctx)

    paths = PathResolver(ctx.ws_root, source.parent)
    executors = _executor_list(flow, filename)
    for section in ("with", "gateway"):
        _no_markers(flow.get(section), f"{filename}: {section}")
    remote_needed = []
    parts: list[PartPlan] = []
    names: set[str] = set()
    for index, executor in enumerate(executors):
        name = executor.setdefault("name", f"executor{index}")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{filename}: the name of executor {index} must be a non-empty string, not {name!r}")
        check_plain_text(name, f"{filename}: the name of executor {index}")
        if name in gateway_names:
            raise BadRequest(f"{filename}: an executor cannot be named {name!r}, the name of a gateway port")
        if name in names:  # Jina would rename one and give both the same port
            raise BadRequest(f"{filename}: two executors are named {name!r}; give each its own name")
        names.add(name)
        _no_markers(executor, f"{filename}: executor {name!r}")
        port = _pop_one(executor, EXECUTOR_PORT_KEYS, f"{filename}: the port of executor {name!r}")
        if port is not None:
            executor["port"] = port
        if "jinad" in executor:
            if name in ctx.remotes:
                executors[index] = _external_entry(executor, ctx.remotes[name])
            else:
                remote_needed.append(_remote_request(executor, name, paths, ctx.ws_root))
            continue
        if "limits" in executor:  # Jina forks local parts from one process: they cannot be capped one by one
            raise BadRequest(f"{filename}: executor {name!r} has 'limits', which only a part on another daemon "
                             "(`jinad:`) can have; the Flow's own 'limits' cap its local parts together")
        if "py_modules" in executor:
            executor["py_modules"] = paths.modules(executor["py_modules"], f"py_modules of {name}")
        if "uses" in executor:
            executor["uses"] = paths.uses(executor["uses"], f"uses of {name}")
        if ctx.parts and _can_be_parts(executor, port):
            executors[index] = _as_parts(executor, name, port, ctx, paths, parts)
        elif not executor.get("external"):
            executor["port"] = ctx.port(name, port)
    if unknown := set(ctx.changes) - {plan.name for plan in parts}:
        raise NotFound(f"{filename}: no executor {sorted(unknown)[0]!r} of this Flow runs as parts on this daemon")

    target = ctx.run_dir / "flow.yml"
    target.write_text(_yaml_text(flow))
    # Readiness: the Flow says it serves, then each gateway port answers (an HTTP one with a
    # real /dry_run: Jina's HTTP servers open their port a little before they can serve).
    # Over TLS the port is probed with TCP only: the ready line has said it serves by then.
    probes = [(port, "dry_run" if protocol == Protocol.HTTP and not tls else "tcp") for protocol, port in zip(protocols, gateway_ports)]
    return Launch([ctx.jina, "flow", "--uses", str(target)], ctx.ports, gateway_ports[0], protocols[0],
                  probes, remote_needed, ready_line=FLOW_READY_LINE, parts=parts)


# An executor entry with only these keys runs as parts (one Pea per replica) behind a gateway
# that lists it as external; any other (shards, polling, uses_before, ...) stays inside the
# gateway's `jina flow`, which runs it as before.
PART_KEYS = frozenset({"name", "needs", "when", "port", "replicas", "env", *(
    PART_ARGS := ("uses", "py_modules", "uses_with", "uses_metas", "uses_requests", "uses_dynamic_batching", "workspace"))})
# What a rolling update may change of an executor (PATCH /flows/{id}/executors/{name}).
PART_CHANGES = ("uses", "py_modules", "uses_with", "envs", "replicas")
MAX_ARGUMENT_CHARS = 100_000  # of JSON (ASCII: non-ASCII escaped), under the kernel's 128 KiB per argument
MAX_USES_CHARS = 1024
# Ports the gateway lists per executor at least: replicas up to this many start on ports it
# already knows, so scaling needs no restart of the gateway (which skips a replica that is down).
REPLICA_SLOTS = 4


def _can_be_parts(executor: dict, port: Any) -> bool:
    replicas = executor.get("replicas", 1)
    ports_fit = port is None or isinstance(port, int) or (isinstance(port, list) and len(port) == replicas)
    # `${{ ENV.X }}` is filled in by Jina as it loads the whole Flow: such an entry stays there.
    return (set(executor) <= PART_KEYS and not executor.get("external") and isinstance(replicas, int)
            and ports_fit and "${{" not in json.dumps(executor, default=str))


def _as_parts(executor: dict, name: str, port: Any, ctx: Preparation, paths: PathResolver, parts: list[PartPlan]) -> dict:
    """The executor's replicas as parts (added to `parts`); the gateway's external entry for them."""
    changes = ctx.changes.get(name, {})
    replicas = changes.get("replicas", executor.get("replicas", 1))
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
        raise BadRequest(f"replicas of {name!r} must be a whole number of at least 1")
    fixed = port if isinstance(port, list) else [port]
    known = len([key for key in ctx.ports if key == name or key.startswith(f"{name}/")])
    if "replicas" in changes and known and replicas > known:
        raise BadRequest(f"executor {name!r} can have at most {known} replicas while its Flow runs (its gateway "
                         "knows that many ports); give it more replicas in the Flow YAML and restart the Flow")
    slots = max(replicas, REPLICA_SLOTS, len(fixed), known)
    ports = [ctx.port(name if r == 0 else f"{name}/{r}", fixed[r] if r < len(fixed) else None) for r in range(slots)]
    spec: dict[str, Any] = {"protocol": Protocol.GRPC.value, "native": True}
    for key in PART_ARGS:
        if key in changes or key in executor:
            spec[key] = changes[key] if key in changes else executor[key]
    spec.setdefault("uses", "BaseExecutor")
    spec["uses"] = paths.uses(spec["uses"], f"uses of {name}")
    if "py_modules" in spec:
        spec["py_modules"] = paths.modules(spec["py_modules"], f"py_modules of {name}")
    env = executor.get("env") or {}
    if not isinstance(env, dict):
        raise BadRequest(f"env of executor {name!r} must be a mapping")
    envs = {**ctx.envs, **{str(k): str(v) for k, v in env.items()}, **changes.get("envs", {})}
    # Named as `jina flow` names a replica's runtime (what `self.runtime_args.name` says).
    parts.extend(PartPlan(name, r, ports[r], {**spec, "port": ports[r], "name": f"{name}/rep-{r}"}, envs) for r in range(replicas))
    entry = {k: v for k, v in executor.items() if k in ("name", "needs", "when")}
    return {**entry, "external": True, "host": "127.0.0.1", "port": ports}


def check_part_changes(body: Any) -> dict:
    """A rolling update's request body, checked; BadRequest if it is not one."""
    if not isinstance(body, dict) or not body:
        raise BadRequest(f"send a JSON object with any of {', '.join(PART_CHANGES)}")
    if unknown := sorted(set(body) - set(PART_CHANGES)):
        raise BadRequest(f"unknown field(s) for an executor update: {', '.join(unknown)}")
    envs = check_envs(body.get("envs", {}))
    if "uses_with" in body and not isinstance(body["uses_with"], dict):
        raise BadRequest("'uses_with' must be a JSON object")
    # A replica takes these on its command line, where one argument holds at most 128 KiB:
    # refused here, before a serving replica is stopped for a start that cannot be.
    if len(json.dumps(body.get("uses_with", {}))) > MAX_ARGUMENT_CHARS:
        raise BadRequest(f"'uses_with' is over {MAX_ARGUMENT_CHARS} characters as JSON; put large settings in a file of the workspace")
    if "uses" in body and (not isinstance(body["uses"], str) or not body["uses"].strip() or body["uses"].startswith("-")
                           or len(body["uses"]) > MAX_USES_CHARS):
        raise BadRequest(f"'uses' must name an Executor class or a YAML file in the workspace (at most {MAX_USES_CHARS} characters)")
    if "uses" in body:
        check_plain_text(body["uses"], "'uses'")
    return {**body, **({"envs": envs} if "envs" in body else {})}


def check_envs(envs: Any) -> dict[str, str]:
    """A request's `envs`, as the child's environment takes them; BadRequest if it cannot."""
    if not isinstance(envs, dict) or not all(isinstance(k, str) and k and "=" not in k for k in envs):
        raise BadRequest("'envs' must be an object of names (without '=') to values")
    for name, value in envs.items():
        check_plain_text(name, "a name in 'envs'")
        if isinstance(value, (dict, list)) or value is None:
            raise BadRequest(f"envs {name} must be text, a number or true/false, not {json.dumps(value)[:40]}")
        check_plain_text(str(value), f"envs {name}")
    return {name: str(value) for name, value in envs.items()}


def _flow_tls(spec: dict, flow: dict, filename: str, ctx: Preparation) -> bool:
    """`tls: true`: the gateway serves with the daemon's certificate (Jina's ssl_certfile and
    ssl_keyfile, written into its `with:`); refused when the daemon has none."""
    tls = given(spec, "tls", False)
    if not isinstance(tls, bool):
        raise BadRequest(f"'tls' must be true or false, not {tls!r}")
    if tls:
        if ctx.tls_files is None:
            raise BadRequest("'tls: true' serves the gateway with the daemon's certificate, and this daemon has none "
                             "(start it with --tls-cert and --tls-key)")
        # In the gateway's own section: under `with:` every executor would serve TLS too.
        gateway = flow.get("gateway")
        if gateway is None:
            gateway = flow["gateway"] = {}
        if not isinstance(gateway, dict):
            raise BadRequest(f"{filename}: 'gateway' must be a mapping with 'tls: true'")
        flow["with"].pop("ssl_certfile", None)
        flow["with"].pop("ssl_keyfile", None)
        gateway["ssl_certfile"], gateway["ssl_keyfile"] = ctx.tls_files
    return tls


def _no_markers(section: Any, what: str) -> None:
    """Refuse an `env:` that sets the daemon's JINAD_* markers: with them changed, a process of
    the object could not be found, and would outlive its object."""
    env = section.get("env") if isinstance(section, dict) else None
    if isinstance(env, dict) and any(str(key).startswith("JINAD_") for key in env):
        raise BadRequest(f"{what}: env must not set JINAD_* variables; the daemon keeps those for itself")


# Keys of an executor entry that say how it runs; a remote one runs elsewhere, so the Flow
# keeps only the rest (needs, when, ...) beside `external`, `host` and `port`.
RUN_KEYS = ("jinad", "uses", "py_modules", "uses_with", "replicas", "shards", "port", "host", "env", "workspace", "protocol",
            "limits")


def _remote_request(executor: dict, name: str, paths: PathResolver, ws_root: Path) -> dict:
    """The Pod request that runs this executor on the daemon its `jinad:` names."""
    url = executor["jinad"]
    try:
        if not isinstance(url, str) or "://" not in url:
            raise ValueError(f"{url!r} is not a daemon URL like http://HOST:8000")
        url = daemon_url(url, "http://HOST:8000")
    except ValueError as exc:
        raise BadRequest(f"jinad of executor {name!r}: {exc}") from None
    root = ws_root.resolve()

    def relative(path: str) -> str:
        return Path(path).relative_to(root).as_posix()

    pod: dict[str, Any] = {"uses": executor.get("uses", "BaseExecutor"), "protocol": Protocol.GRPC.value}
    if isinstance(pod["uses"], str) and pod["uses"].endswith((".yml", ".yaml")):
        pod["uses"] = relative(paths.uses(pod["uses"], f"uses of {name}"))
    if "py_modules" in executor:
        pod["py_modules"] = [relative(p) for p in paths.modules(executor["py_modules"], f"py_modules of {name}")]
    for key in ("uses_with", "replicas", "shards", "port"):  # a port the user fixed, there too
        if key in executor:
            pod[key] = executor[key]
    if isinstance(executor.get("env"), dict):
        pod["envs"] = executor["env"]
    if executor.get("limits") is not None:  # checked here, for a 400 that names the part
        try:
            pod["limits"] = parse_limits(executor["limits"])
        except BadRequest as exc:
            raise BadRequest(f"executor {name!r}: {exc.message}") from None
    return {"name": name, "jinad": url, "pod": pod}


def _external_entry(executor: dict, remote: RemotePart) -> dict:
    ports = remote.ports
    entry = {k: v for k, v in executor.items() if k not in RUN_KEYS}
    return {**entry, "external": True, "host": remote.host, "port": ports[0] if len(ports) == 1 else ports}


def given(spec: dict, name: str, default: Any) -> Any:
    """A request field, or the default when it is absent or null; never when it is a falsy
    value of the wrong type ([] for an object), which must be refused, not taken as absent."""
    value = spec.get(name)
    return default if value is None else value


def _executor_fields(spec: dict, ws_root: Path) -> dict:
    """`uses`, `py_modules` and `uses_with` of a Pod or Pea request, checked and resolved."""
    uses = spec.get("uses")
    if not isinstance(uses, str) or not uses.strip():
        raise BadRequest("'uses' is required: an Executor class name or a YAML file in the workspace")
    if uses.startswith("-"):  # it goes on a command line, where it would be read as an option
        raise BadRequest(f"'uses' must name an Executor class or a YAML file, not {uses[:40]!r}")
    check_plain_text(uses, "uses")
    uses_with = given(spec, "uses_with", {})
    if not isinstance(uses_with, dict):
        raise BadRequest("'uses_with' must be a JSON object")
    paths = PathResolver(ws_root)
    return {
        "uses": paths.uses(uses, "uses"),
        "py_modules": paths.modules(given(spec, "py_modules", []), "py_modules"),
        "uses_with": uses_with,
    }


def prepare_pod(spec: dict, ctx: Preparation) -> Launch:
    """A Deployment always brings its own gateway, which a Flow cannot use as an external
    executor; the Pod's address is therefore its head (with shards) or its worker(s), whose
    ports are all fixed here. `executor` is the head or first worker, `executor-N` the other
    replicas: an external Flow entry lists them all."""
    fields = _executor_fields(spec, ctx.ws_root)
    protocol = _protocol(spec.get("protocol"))
    replicas, shards = _positive(spec, "replicas"), _positive(spec, "shards")
    port = ctx.port("executor", spec.get("port"))
    gateway = ctx.port("gateway", None)
    with_ = {**{k: v for k, v in fields.items() if v}, "name": "executor", "replicas": replicas, "shards": shards,
             "protocol": protocol, "port": gateway}
    if shards > 1:
        with_["peer_ports"] = {
            str(shard): [ctx.port(f"shard-{shard}-replica-{r}", None) for r in range(replicas)]
            for shard in range(shards)
        }
    elif replicas > 1:
        with_["peer_ports"] = [port] + [ctx.port(f"executor-{r}", None) for r in range(1, replicas)]
    if shards > 1 or replicas == 1:
        # Jina gives `port` to the gateway; the head's (or lone worker's) port can only be set
        # as this extra CLI flag, which the Deployment's own parser reads.
        with_[f"port={port}"] = True
    target = ctx.run_dir / "deployment.yml"
    target.write_text(_yaml_text({"jtype": "Deployment", "with": with_}))
    serving = [p for name, p in ctx.ports.items() if name != "gateway"]
    return Launch([ctx.jina, "deployment", "--uses", str(target)], ctx.ports, port, protocol,
                  [(p, "tcp") for p in serving] + [(gateway, "tcp")])


def prepare_pea(spec: dict, ctx: Preparation) -> Launch:
    fields = _executor_fields(spec, ctx.ws_root)
    protocol = _protocol(spec.get("protocol"))
    port = ctx.port("executor", spec.get("port"))
    argv = [ctx.jina, "executor", "--uses", fields["uses"], "--port", str(port), "--protocol", protocol]
    if fields["py_modules"]:
        argv += ["--py-modules", *fields["py_modules"]]
    if fields["uses_with"]:
        argv += ["--uses-with", json.dumps(fields["uses_with"])]
    # Settings only a Flow's part has (see PART_ARGS): its runtime is one process, as in a Flow.
    for key in ("uses_metas", "uses_requests", "uses_dynamic_batching"):
        if spec.get(key):
            argv += [f"--{key.replace('_', '-')}", json.dumps(spec[key])]
    if spec.get("name"):
        argv += ["--name", spec["name"]]
    if spec.get("workspace"):
        argv += ["--workspace", str(spec["workspace"])]
    if spec.get("native"):
        argv.append("--native")
    # An executor opens its port once its constructor has finished.
    return Launch(argv, ctx.ports, port, protocol, [(port, "tcp")])


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    plural: str
    prepare: Callable[..., Launch]
    fields: frozenset[str]  # request fields of this kind, beside the common ones


COMMON_FIELDS = frozenset({"workspace_id", "envs", "restart", "timeout_s", "limits", "owner"})
MAX_OWNER_CHARS = 256
EXECUTOR_FIELDS = frozenset({"uses", "py_modules", "uses_with", "protocol", "port"})
KINDS = {
    kind.name: kind
    for kind in (
        Kind("flow", "flows", prepare_flow, frozenset({"filename", "tls"})),
        Kind("pod", "pods", prepare_pod, EXECUTOR_FIELDS | {"replicas", "shards"}),
        Kind("pea", "peas", prepare_pea, EXECUTOR_FIELDS),
    )
}


@dataclasses.dataclass(frozen=True)
class Request:
    """A create request, checked: the fields every kind takes, and the kind's own (`spec`)."""

    workspace_id: str
    spec: dict
    envs: dict[str, str]
    restart: str
    timeout_s: float | None
    limits: dict = dataclasses.field(default_factory=dict)  # normalised (see limits.py)
    owner: str | None = None  # who made it, for what: a Flow's remote part names its Flow and part


def parse_request(kind: Kind, body: dict) -> Request:
    """The request's fields, or BadRequest; the kind's own fields are checked as it is prepared."""
    unknown = sorted(set(body) - COMMON_FIELDS - kind.fields)
    if unknown:
        raise BadRequest(f"unknown field(s) for a {kind.name}: {', '.join(unknown)}")
    workspace_id = body.get("workspace_id")
    if workspace_id is None:
        raise BadRequest("'workspace_id' is required: upload files with POST /workspaces first")
    if not isinstance(workspace_id, str):
        raise BadRequest(f"'workspace_id' must be a workspace's id (a string), not {workspace_id!r}")
    envs = check_envs(given(body, "envs", {}))
    restart = given(body, "restart", RestartPolicy.NO.value)
    if not isinstance(restart, str) or restart not in RestartPolicy.values():
        raise BadRequest(f"'restart' must be one of {', '.join(RestartPolicy)}")
    timeout = body.get("timeout_s")
    if timeout is not None:
        try:  # an int past float's range (10**400) would fail later, in the supervisor
            seconds = float(timeout) if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) else math.nan
        except OverflowError:
            seconds = math.inf
        if not 0 < seconds < math.inf:  # NaN fails this too
            raise BadRequest("'timeout_s' must be a positive, finite number of seconds")
        timeout = seconds
    owner = body.get("owner")
    if owner is not None:
        if not isinstance(owner, str) or not 0 < len(owner) <= MAX_OWNER_CHARS:
            raise BadRequest(f"'owner' must be a text of 1 to {MAX_OWNER_CHARS} characters")
        check_plain_text(owner, "'owner'")
    spec = {k: v for k, v in body.items() if k in kind.fields}
    return Request(workspace_id, spec, envs, restart, timeout, parse_limits(body.get("limits")),
                   owner)
