//! swarm-exec's own command line: the clap definitions (doc comments are the help text) and
//! the parsers of its values. Telling this command line from the Skopos plugin protocol's
//! and the docker CLI plugin's, and reading the process's arguments, is `invocation.rs`.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use swarm_exec_core::model::duration::parse_duration;
use swarm_exec_core::model::target::TaskRef;

/// Run commands in Docker Swarm service tasks, on any node, from a manager.
///
/// swarm-exec talks to a swarm manager (the local socket, or DOCKER_HOST), starts a
/// one-shot helper service on the task's node that execs the command there, streams the
/// command's output back and exits with the command's exit code.
#[derive(Debug, Parser)]
#[command(name = "swarm-exec", version, propagate_version = true)]
#[command(after_help = TOP_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Command,
}

/// Which engine, as with the docker CLI: --host and --context (not both) beat DOCKER_HOST,
/// which beats DOCKER_CONTEXT, which beats the Docker config's current context.
#[derive(Debug, Args, Default, Clone)]
pub struct Global {
    /// Engine to talk to, e.g. unix:///var/run/docker.sock, tcp://m:2376, ssh://user@m
    #[arg(short = 'H', long, value_name = "HOST", global = true)]
    pub host: Option<String>,

    /// Docker context to use (see `docker context ls`)
    #[arg(long, value_name = "NAME", global = true)]
    pub context: Option<String>,

    /// Trace each API step, with its timing, on stderr
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,

    /// No status line while waiting (it only ever shows on a terminal)
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,

    /// As a docker CLI plugin: the docker CLI's `--config`, `--tlscert` and `--tls`, which
    /// stand for DOCKER_CONFIG, DOCKER_CERT_PATH and DOCKER_TLS_VERIFY.
    #[arg(skip)]
    pub config: Option<String>,
    #[arg(skip)]
    pub cert_path: Option<String>,
    #[arg(skip)]
    pub tls_verify: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in the container of one service task
    #[command(after_help = TASK_EXEC_EXAMPLES)]
    TaskExec(TaskExecArgs),
    /// Run a command in every task of a service (or stack), one helper per node
    #[command(
        after_help = SERVICE_EXEC_EXAMPLES,
        override_usage = "swarm-exec service-exec [OPTIONS] (<SERVICE> | --stack <NAME>) [--] <COMMAND> [ARG]..."
    )]
    ServiceExec(ServiceExecArgs),
    /// Copy files or directories between a task's container and here (like docker cp)
    #[command(after_help = CP_EXAMPLES)]
    Cp(CpArgs),
    /// Run a debug container beside a task, in its PID and network namespaces (for images
    /// without a shell or tools)
    #[command(
        after_help = DEBUG_EXAMPLES,
        override_usage = "swarm-exec debug [OPTIONS] <TASK> [-- <COMMAND> [ARG]...]"
    )]
    Debug(DebugArgs),
    /// Wait until services have converged: every task running (and healthy) on the
    /// current spec, no update under way
    #[command(
        after_help = WAIT_EXAMPLES,
        override_usage = "swarm-exec wait [OPTIONS] (<SERVICE>... | --stack <NAME>)"
    )]
    Wait(WaitArgs),
    /// List a service's named actions, or run one (declared in its labels
    /// swarm-exec.action.NAME)
    #[command(
        after_help = ACTION_EXAMPLES,
        override_usage = "swarm-exec action [OPTIONS] <SERVICE> [<NAME> [ARG]...]"
    )]
    Action(ActionArgs),
    /// Forward local ports to ports of a task (like kubectl port-forward)
    #[command(after_help = PORT_FORWARD_EXAMPLES)]
    PortForward(PortForwardArgs),
    /// Remove helper services left behind (e.g. by a killed client)
    #[command(after_help = GC_EXAMPLES)]
    Gc(GcArgs),
    /// What a --persist keeper holds (status), or end it now (stop)
    #[command(after_help = PERSIST_EXAMPLES)]
    Persist(PersistArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(
        after_help = "Examples:\n  swarm-exec completions bash > /etc/bash_completion.d/swarm-exec\n  swarm-exec completions zsh > \"${fpath[1]}/_swarm-exec\"\n  swarm-exec completions fish > ~/.config/fish/completions/swarm-exec.fish"
    )]
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff)
    #[command(after_help = "Example:\n  swarm-exec man > /usr/local/share/man/man1/swarm-exec.1")]
    Man,
    /// Run a command in a container on the engine swarm-exec talks to (no helper)
    #[command(after_help = EXEC_EXAMPLES)]
    Exec(ExecArgs),
    /// (internal) Run inside the helper container: exec in a container on this node
    #[command(hide = true, disable_help_flag = true)]
    NodeExec(NodeArgs),
    /// (internal) Stop a command that outlived its helper: signal it and its children
    #[command(hide = true, disable_help_flag = true)]
    NodeKill(NodeArgs),
    /// (internal) A live session's relay on the manager
    #[command(hide = true, disable_help_flag = true)]
    NodeRelay(NodeArgs),
    /// (internal) port-forward's forwarder, in the task's network namespace
    #[command(hide = true, disable_help_flag = true)]
    NodeForward(NodeArgs),
}

const TOP_HELP: &str = "\
Exit codes: the command's own; 124 timeout; 125 swarm-exec failed; 126/127 cannot
invoke / not found; 130/143/129 SIGINT/SIGTERM/SIGHUP. See the README.

As a Skopos plugin (a drop-in for the reference swarm-exec plugin):
  swarm-exec [--debug] [--compact|-c] [--stdout FILE] [--stderr FILE] <ACTION> [JSON]
  ACTION: inst_exec, preflight, postflight. JSON (or stdin) is the step's input object;
  on success it is echoed on stdout with a \"swarm_exec\" key added (exit 0); on failure a
  one-line reason goes to stderr (exit 2).

Examples:
  swarm-exec task-exec web.2 cat /etc/hostname
  echo '{\"inst\":[{\"id\":\"q1mh1syk49e0\"}],\"command\":\"true\"}' | swarm-exec inst_exec";

const SERVICE_EXEC_EXAMPLES: &str = "\
Examples:
  swarm-exec service-exec web nginx -s reload
  swarm-exec service-exec --filter node=node3 --filter slot=2 web -- cat /etc/hostname
  swarm-exec service-exec --filter label=tier=front --stack shop sh -c 'kill -HUP 1'
  swarm-exec service-exec --parallel 1 --delay 5s --fail-fast web ./migrate
  swarm-exec service-exec --format json web sh -c 'wc -l < /var/log/app.log' | jq .

Each running task of the service is selected; --filter narrows them (node=NAME|ID,
slot=N, label=KEY or label=KEY=VALUE on the container; values of one key are
alternatives, different keys must all match). One helper per node runs the command in
all of that node's tasks at once. Output lines are prefixed SERVICE.SLOT@NODE (SERVICE@NODE
for global services), stdout to stdout and stderr to stderr. With --parallel N, tasks
go N at a time (a rolling exec with --delay); --timeout then applies to each wave.

Exit codes: 0 when every task's command exited 0; 1 when any failed, timed out or could
not run (a summary on stderr names each); 125 when swarm-exec itself failed (service
not found, no task matches, engine unreachable); 130/143/129 on SIGINT/SIGTERM/SIGHUP.";

const GC_EXAMPLES: &str = "\
Examples:
  swarm-exec gc             # helpers whose deadline passed (15 s ago or more)
  swarm-exec gc --dry-run   # what gc would remove
  swarm-exec gc --all       # every helper, including ones still at work

Helpers are services named swarm-exec-<12 hex digits>, labelled swarm-exec.helper=1,
running node-exec with the node's docker socket; their runs' envelopes are secrets named
swarm-exec-run-<12 hex digits>. gc touches nothing else. Each carries its budget
(swarm-exec.budget, seconds), after which its node-local process has given up; the
manager's creation time and clock tell when that is. A client that exits normally,
times out or is interrupted removes its own helper; gc is for clients that were killed
(SIGKILL, a lost machine).";

const EXEC_EXAMPLES: &str = "\
Examples:
  swarm-exec exec 4f1c2a9be0d1 cat /etc/hostname
  DOCKER_HOST=unix:///var/run/docker.sock swarm-exec exec web.1.q1mh1syk49e0 -- ls -la

The reference plugin's node-local word: like `docker exec`, without a TTY or stdin.";

const TASK_EXEC_EXAMPLES: &str = "\
Examples:
  swarm-exec task-exec web.2 cat /etc/hostname
  swarm-exec task-exec web env
  swarm-exec task-exec -it web sh
  tar c . | swarm-exec task-exec -i web.1 tar x -C /srv
  swarm-exec task-exec q1mh1syk49e0 -- ls -la /data
  swarm-exec task-exec agent@node3 sh -c 'kill -HUP 1'
  swarm-exec task-exec -e LEVEL=debug -u nobody -w /app web.1 ./reload
  swarm-exec task-exec --timeout 30s web.1 ./migrate --check
  swarm-exec task-exec --format json web ./migrate | jq -e '.exit_code == 0'
  docker run --rm -v /var/run/docker.sock:/var/run/docker.sock \\
      swarm-exec:0.1.0 task-exec web.1 true

TASK is a task ID or unique ID prefix (see `docker service ps SERVICE`), SERVICE.SLOT
for a replicated service, SERVICE@NODE (hostname or node ID) for any service, or SERVICE
alone for one of its running tasks (the lowest slot; stderr says which).
The command is run directly, not through a shell; use `sh -c '...'` for shell syntax.
Nothing needs to be on the nodes: the helper runs the node-side program this binary
carries, as swarm configs, in the task's own image (or, with --image, that image).

Exit codes: the command's own; 124 timeout; 125 swarm-exec failed; 126/127 cannot
invoke / not found; 130/143/129 interrupted by SIGINT/SIGTERM/SIGHUP (the helper is removed first).";

#[derive(Debug, Args)]
pub struct TaskExecArgs {
    #[command(flatten)]
    pub exec: ExecOptions,

    /// Allocate a terminal (with -i: a session, keys passed as typed, Ctrl-C included);
    /// no timeout unless given. A task on another node is reached over an overlay network
    /// (see --network)
    #[arg(short = 't', long)]
    pub tty: bool,

    /// The attachable overlay network a live session (-t, or -i with more than a secret's
    /// worth of stdin) uses for a task on another node [default: one of the session's own,
    /// made for it and removed with it]
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,

    /// How a plain run's output comes back from another node: log (the helper's sealed
    /// log, nothing but the Swarm API) or session (a live session through a relay and an
    /// overlay network: faster for large output that does not compress)
    #[arg(long, value_name = "WAY", default_value = "log", value_parser = ["log", "session"])]
    pub via: String,

    /// Output format: text (the command's output as it comes) or json (one object at the
    /// end: the task, its outcome and exit code, its output; for pipelines)
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub format: String,

    /// With --format json: keep at most SIZE bytes of the output (stdout and stderr
    /// together; 512, 64K, 16M, 1G), and mark the result truncated
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = parse_size)]
    pub max_output: usize,

    /// Wait up to this long for the task's service to converge (see `wait`) before
    /// running; 125 if it has not
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub wait_ready: Option<Duration>,

    /// Keep a helper standing on the task's node for later runs, until this long passes
    /// with none (like ssh's ControlPersist): a background keeper of yours holds it, and runs
    /// from any of your processes go through it at nearly docker exec's speed. Plain runs
    /// only (not -t, --via session, --format json, --image); see `persist`
    #[arg(long, value_name = "DURATION", env = "SWARM_EXEC_PERSIST", value_parser = parse_timeout)]
    pub persist: Option<Duration>,

    /// The task: ID or unique ID prefix, SERVICE.SLOT, SERVICE@NODE, or SERVICE
    #[arg(value_name = "TASK", value_parser = parse_task)]
    pub task: TaskRef,

    /// The command and its arguments, passed as is (no shell)
    #[arg(
        value_name = "COMMAND",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct PersistArgs {
    #[command(subcommand)]
    pub command: PersistCommand,
}

#[derive(Debug, Subcommand)]
pub enum PersistCommand {
    /// List the keeper's standing helpers (exit 1 when no keeper stands)
    Status {
        /// One JSON object
        #[arg(long)]
        json: bool,
    },
    /// End the keeper now: its helpers, relays, networks and secrets are removed
    Stop,
    /// (internal) Be the keeper (started by the first --persist run)
    #[command(hide = true)]
    Keep,
}

/// The options `task-exec` and `service-exec` share with `docker exec`.
#[derive(Debug, Args)]
pub struct ExecOptions {
    /// Set an environment variable in the command (KEY=VALUE; KEY alone passes on this
    /// process's value)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Working directory inside the container
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// User to run as (name or UID, optionally :GROUP)
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,

    /// Pass this process's stdin to the command: up to a swarm secret's worth (500 KiB) it
    /// travels in the run's secret; more is streamed to the end (task-exec only)
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Give up after this long (e.g. 30, 30s, 5m, 1m30s); exit code 124 [default: 300s]
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,

    /// Run helpers from this swarm-exec image (it must hold this version and be present on,
    /// or pullable by, every node used) instead of zero-install, where the node-side program
    /// travels as swarm configs and runs in the task's own image [e.g. swarm-exec:0.1.0]
    #[arg(long, value_name = "IMAGE", env = "SWARM_EXEC_IMAGE")]
    pub image: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServiceExecArgs {
    #[command(flatten)]
    pub exec: ExecOptions,

    /// All services of this stack instead of one SERVICE
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,

    /// Select tasks: node=NAME|ID, slot=N, label=KEY[=VALUE] (repeatable)
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,

    /// Run at most N tasks at a time, in waves
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,

    /// Wait this long between waves (with --parallel), e.g. 5s
    #[arg(long, value_name = "DURATION", value_parser = parse_delay, requires = "parallel")]
    pub delay: Option<Duration>,

    /// Start no further wave after a task failed
    #[arg(long)]
    pub fail_fast: bool,

    /// Wait up to this long for the services to converge (see `wait`) before running; 125
    /// if they have not
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub wait_ready: Option<Duration>,

    /// Do not prefix output lines with the task's name
    #[arg(long)]
    pub no_prefix: bool,

    /// Output format: text (live, prefixed) or json (one object per line for each task, as
    /// it ends)
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub format: String,

    /// With --format json: keep at most SIZE bytes of each task's output (stdout and stderr
    /// together; 512, 64K, 16M, 1G), and mark the result truncated
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = parse_size)]
    pub max_output: usize,

    /// SERVICE (unless --stack), then the command and its arguments (no shell)
    #[arg(
        value_name = "SERVICE] [COMMAND",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<OsString>,
}

const DEBUG_EXAMPLES: &str = "\
Examples:
  swarm-exec debug -it web.1
  swarm-exec debug api.2 -- sh -c 'ps; ls /proc/1/root/app'
  swarm-exec debug --image nicolaka/netshoot -it db@node3 -- tcpdump -i any port 5432
  swarm-exec debug -u 1000 web.1 -- wget -qO- http://localhost:8080/health

The debug container runs IMAGE (busybox unless --image says otherwise) on the task's node,
in the task's PID and network namespaces, and its IPC namespace when the task shares it:
`ps` shows the task's processes, /proc/1/root its files, localhost its ports (a task that
runs as another user than root lets only that user, -u, or --privileged into its files).
Its own file system is IMAGE's; the task's container is not changed. The command (sh
unless given) is run as is, whatever entrypoint IMAGE names. A node that lacks IMAGE pulls
it (anonymously: a private image must be on the node already). The container is removed
when the command ends, times out or is interrupted; a helper on the node runs it, also for
a task on the engine swarm-exec talks to (its program as for task-exec: zero-install, or
SWARM_EXEC_IMAGE).

Exit codes: the command's own; 124 timeout; 125 swarm-exec failed (no such task, IMAGE
cannot be had on the node); 126/127 cannot invoke / not found; 130/143/129 interrupted.";

#[derive(Debug, Args)]
pub struct DebugArgs {
    /// The image to run beside the task
    #[arg(long, value_name = "IMAGE", default_value = "busybox")]
    pub image: String,

    /// Pass this process's stdin to the command (with -t: keys as typed)
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Allocate a terminal; no timeout unless given
    #[arg(short = 't', long)]
    pub tty: bool,

    /// Set an environment variable in the command (KEY=VALUE; KEY alone passes on this
    /// process's value)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Working directory inside the debug container
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// User to run as (name or UID, optionally :GROUP)
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// Give extended privileges to the debug container
    #[arg(long)]
    pub privileged: bool,

    /// Give up after this long (e.g. 30s, 5m); exit code 124 [default: 300s without -t]
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,

    /// The attachable overlay network a live session uses (see task-exec --network)
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,

    /// The task: ID or unique ID prefix, SERVICE.SLOT, SERVICE@NODE, or SERVICE
    #[arg(value_name = "TASK", value_parser = parse_task)]
    pub task: TaskRef,

    /// The command and its arguments, passed as is (no shell) [default: sh]
    #[arg(
        value_name = "COMMAND",
        num_args = 0..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

const WAIT_EXAMPLES: &str = "\
Examples:
  docker service update --image app:2 web && swarm-exec wait web && swarm-exec task-exec web ./migrate
  docker stack deploy -c shop.yml shop && swarm-exec wait --timeout 10m --stack shop
  swarm-exec wait web worker || echo 'not converged'

A service has converged when no update or rollback is under way, every task it wants
running runs the service's current spec, no task of an earlier spec still runs, and a
replicated service has as many as it asks for. A task with a health check counts once it
has passed it: the engine keeps it starting until its container is healthy, and replaces
it when it turns unhealthy. A task's spec is compared as far as the engine shows it on a
task: its container spec (not its health check or stop grace period) and the force-update
counter (`docker service update --force`); restart policy, resources and placement are not
compared.

Exit codes: 0 converged; 1 not converged at the timeout (stderr names each task that is
not there yet, and why); 125 swarm-exec failed (no such service, engine unreachable);
130/143/129 interrupted.";

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// All services of this stack (repeatable)
    #[arg(long, value_name = "NAME")]
    pub stack: Vec<String>,

    /// Give up after this long (e.g. 90s, 10m); exit code 1
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// The services, by name
    #[arg(value_name = "SERVICE", required_unless_present = "stack")]
    pub services: Vec<String>,
}

const ACTION_EXAMPLES: &str = "\
Examples:
  swarm-exec action web                          # the actions web declares
  swarm-exec action web migrate                  # run one in a task of web
  swarm-exec action --wait-ready 5m web migrate  # once web has converged
  swarm-exec action --all --parallel 1 web reload
  swarm-exec action web manage -- check --deploy # extra arguments where it has \"...\"
  SWARM_EXEC_ACTOR=ci/pipeline-812 swarm-exec action --format json web migrate

A service declares an action in a label swarm-exec.action.NAME holding its command as a
JSON array of strings (in a stack file: deploy.labels), e.g.
  swarm-exec.action.migrate: '[\"./manage.py\", \"migrate\", \"--noinput\"]'
  swarm-exec.action.manage:  '[\"./manage.py\", \"...\"]'
Only declared actions run, exactly as declared: no shell, and extra arguments only in
place of an element that is exactly \"...\" (an action without one takes none). Without
--all the action runs in one task, as task-exec SERVICE picks it (a running task of the
current spec, the lowest slot); with --all in every task, as service-exec. Helpers are
labelled with the actor (SWARM_EXEC_ACTOR, else user@host) and the action's name, never
its command.

Exit codes: the command's own (with --all: 0 when every task's exited 0, else 1); 124
timeout; 125 swarm-exec failed, the action is not declared or takes no arguments
(nothing is run); 130/143/129 interrupted.";

#[derive(Debug, Args)]
pub struct ActionArgs {
    #[command(flatten)]
    pub exec: ExecOptions,

    /// Run in every task of the service (as service-exec), not in one
    #[arg(long, requires = "name")]
    pub all: bool,

    /// With --all, select tasks: node=NAME|ID, slot=N, label=KEY[=VALUE] (repeatable)
    #[arg(
        short = 'f',
        long = "filter",
        value_name = "KEY=VALUE",
        requires = "all"
    )]
    pub filter: Vec<String>,

    /// With --all, run at most N tasks at a time, in waves
    #[arg(long, value_name = "N", requires = "all")]
    pub parallel: Option<usize>,

    /// Wait this long between waves (with --parallel), e.g. 5s
    #[arg(long, value_name = "DURATION", value_parser = parse_delay, requires = "parallel")]
    pub delay: Option<Duration>,

    /// With --all, start no further wave after a task failed
    #[arg(long, requires = "all")]
    pub fail_fast: bool,

    /// Wait up to this long for the service to converge (see `wait`) before running; 125 if
    /// it has not
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, requires = "name")]
    pub wait_ready: Option<Duration>,

    /// Keep the helper standing for later runs until this long passes with none (see
    /// task-exec --persist; not with --all)
    #[arg(long, value_name = "DURATION", env = "SWARM_EXEC_PERSIST", value_parser = parse_timeout)]
    pub persist: Option<Duration>,

    /// With --all, do not prefix output lines with the task's name
    #[arg(long, requires = "all")]
    pub no_prefix: bool,

    /// Output format: text, or json (the list of actions; a run's result as task-exec's
    /// or, with --all, service-exec's)
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub format: String,

    /// With --format json: keep at most SIZE bytes of a task's output (512, 64K, 16M, 1G)
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = parse_size)]
    pub max_output: usize,

    /// The service that declares the action
    #[arg(value_name = "SERVICE")]
    pub service: String,

    /// The action to run; without it, the service's actions are listed
    #[arg(value_name = "NAME")]
    pub name: Option<String>,

    /// Extra arguments, for an action whose command has a "..." element
    #[arg(
        value_name = "ARG",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<OsString>,
}

const PORT_FORWARD_EXAMPLES: &str = "\
Examples:
  swarm-exec port-forward db.1 5432                # localhost:5432 to db.1's port 5432
  swarm-exec port-forward web.1 8080:80 :9090      # 8080 to 80, a free port to 9090
  swarm-exec port-forward --address 0.0.0.0 api@node3 8000
  swarm-exec -H ssh://ops@manager1 port-forward db.1 15432:5432

Each PORT is [LOCAL:]REMOTE: REMOTE alone listens on the same port here; an empty LOCAL or
0 picks a free one. Each listening address and port is printed as it opens (\"Forwarding
from 127.0.0.1:5432 -> 5432\"). Every connection accepted is carried to REMOTE on the
task's own localhost, inside one live session: a helper on the task's node makes a
forwarder in the task's network namespace; nothing listens on any node. A connection the
task refuses is reported and closed, and forwarding goes on. It runs until interrupted
(Ctrl-C: 130, SIGTERM: 143), and removes what it made; a task that stops ends it (125).";

#[derive(Debug, Args)]
pub struct PortForwardArgs {
    /// Listen on these addresses here (comma-separated IPs, or localhost for 127.0.0.1 and
    /// ::1)
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1",
        value_delimiter = ','
    )]
    pub address: Vec<String>,

    /// The attachable overlay network the session uses (see task-exec --network)
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,

    /// The task: ID or unique ID prefix, SERVICE.SLOT, SERVICE@NODE, or SERVICE
    #[arg(value_name = "TASK", value_parser = parse_task)]
    pub task: TaskRef,

    /// [LOCAL:]REMOTE port pairs
    #[arg(value_name = "PORT", required = true, num_args = 1.., value_parser = parse_port_pair)]
    pub ports: Vec<(u16, u16)>,
}

/// `[LOCAL:]REMOTE`, as kubectl: REMOTE alone listens on the same port; an empty LOCAL, or
/// 0, on a free one. REMOTE must be a port (1-65535).
pub fn parse_port_pair(s: &str) -> Result<(u16, u16), String> {
    let port = |p: &str, what: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{what} port {p:?} is not a number from 0 to 65535"))
    };
    let (local, remote) = match s.split_once(':') {
        Some(("", r)) => (0, port(r, "remote")?),
        Some((l, r)) => (port(l, "local")?, port(r, "remote")?),
        None => {
            let p = port(s, "remote")?;
            (p, p)
        }
    };
    if remote == 0 {
        return Err(format!("{s:?}: the remote port must be from 1 to 65535"));
    }
    Ok((local, remote))
}

/// The node side's arguments, passed as they are to `swarm_exec_node`, which defines them
/// (`swarm_exec_proto::args`).
#[derive(Debug, Args)]
pub struct NodeArgs {
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

const CP_EXAMPLES: &str = "\
Examples:
  swarm-exec cp web.1:/etc/nginx/nginx.conf .
  swarm-exec cp ./site web.1:/usr/share/nginx/html
  swarm-exec cp db.1:/var/lib/postgresql/data/pg_hba.conf ./pg_hba.conf
  swarm-exec cp web.1:/var/log - | tar t
  tar c -C build . | swarm-exec cp - web.1:/srv

TASK:PATH names a path in the task's container (absolute); the other side is a local path
(write ./a:b for one with a colon) or - for a tar stream. As docker cp: a directory
destination receives the source by its name, any other is the source's new name. Modes are
kept. What is unpacked here never lands outside DST: entries with absolute or .. paths,
and entries written through a symbolic link, are refused. A task on another node is
reached over the session overlay (see task-exec --network).";

#[derive(Debug, Args)]
pub struct CpArgs {
    /// What to copy: TASK:PATH, a local path, or - (a tar stream on stdin)
    #[arg(value_name = "SRC")]
    pub src: String,
    /// Where to: a local path, TASK:PATH, or - (a tar stream on stdout)
    #[arg(value_name = "DST")]
    pub dst: String,
    /// Give up after this long (e.g. 30s, 10m) [default: 1h]
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
    /// The attachable overlay for a task on another node [default: one of the copy's own]
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// Run the helper from this swarm-exec image instead of zero-install
    #[arg(long, value_name = "IMAGE", env = "SWARM_EXEC_IMAGE")]
    pub image: Option<String>,
    /// Out of a task: keep owners (uid/gid) and every mode bit, setuid/setgid included, as
    /// in the container (as docker cp -a); without it files are yours, without those bits
    #[arg(short, long)]
    pub archive: bool,
    /// Out of a task: unpack into a directory that another user owns (refused by default:
    /// its owner could redirect what is written there)
    #[arg(long)]
    pub force: bool,
}

const PERSIST_EXAMPLES: &str = "\
Examples:
  export SWARM_EXEC_PERSIST=10m           # every task-exec in this shell keeps its helper
  swarm-exec task-exec web.1 cat /etc/hostname   # opens the session (~1.5 s)
  swarm-exec task-exec web.2 date         # any task on that node: nearly docker exec's speed
  swarm-exec task-exec --persist 30s api.1 ./healthcheck
  swarm-exec persist status               # the keeper's helpers, one per node
  swarm-exec persist stop                 # remove them now

The keeper is your own process, reached through a socket only you can open
($XDG_RUNTIME_DIR/swarm-exec or /tmp/swarm-exec-UID); each standing helper holds its
node's docker socket for as long as it stands. What it made is labelled and leased:
`swarm-exec gc` removes it if the keeper is killed.";

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Remove every helper, also those whose deadline is still ahead, and the node-side
    /// program's configs of this build too (they are made again on first use)
    #[arg(long)]
    pub all: bool,
    /// List what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Container ID or name, on the engine at DOCKER_HOST (default: the local socket)
    #[arg(value_name = "CONTAINER", value_parser = parse_container)]
    pub container: String,

    /// The command and its arguments, passed as is (no shell)
    #[arg(
        value_name = "COMMAND",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// A byte count: a number, with K, M or G (powers of 1024) after it if wanted.
fn parse_size(s: &str) -> Result<usize, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        _ => {
            return Err(format!(
                "{s:?}: expected a number of bytes, e.g. 512, 64K, 16M"
            ))
        }
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of bytes, e.g. 512, 64K, 16M"))?;
    match n.checked_mul(1 << shift) {
        Some(0) => Err("must be at least 1 byte".to_owned()),
        Some(n) => Ok(n),
        None => Err(format!("{s:?} is too large")),
    }
}

/// Like a timeout, but zero is fine.
fn parse_delay(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Err(swarm_exec_core::model::duration::InvalidDuration::Zero(_)) => Ok(Duration::ZERO),
        r => r.map_err(|e| e.to_string()),
    }
}

pub fn parse_task(s: &str) -> Result<TaskRef, String> {
    TaskRef::parse(s).map_err(|e| e.to_string())
}

/// Container IDs and names as Docker accepts them.
fn parse_container(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("invalid container name or ID {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn command_after_task_keeps_its_own_flags() {
        let cli = Cli::try_parse_from([
            "swarm-exec",
            "task-exec",
            "-e",
            "A=1",
            "web.1",
            "ls",
            "-la",
            "--timeout",
            "1",
        ])
        .unwrap();
        let Command::TaskExec(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.exec.env, ["A=1"]);
        assert_eq!(a.command, ["ls", "-la", "--timeout", "1"]);
        assert_eq!(a.exec.timeout, None);
    }

    #[test]
    fn bad_task_and_timeout_are_usage_errors() {
        for args in [
            vec!["swarm-exec", "task-exec", "web.1; ls", "true"],
            vec!["swarm-exec", "task-exec", "--timeout", "0", "web.1", "true"],
            vec![
                "swarm-exec",
                "task-exec",
                "--timeout",
                "-5",
                "web.1",
                "true",
            ],
            vec!["swarm-exec", "task-exec", "web.1"],
        ] {
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
    }
}

#[cfg(test)]
mod help_snapshots {
    use clap::CommandFactory;

    use super::*;

    fn help(path: &[&str]) -> String {
        let mut cmd = Cli::command().term_width(100);
        // As at run time: global options propagated to the subcommands.
        cmd.build();
        let mut sub = &mut cmd;
        for name in path {
            sub = sub.find_subcommand_mut(name).expect("subcommand");
        }
        sub.render_long_help().to_string()
    }

    /// Every subcommand's help has examples, and its text is pinned.
    #[test]
    fn help_texts() {
        insta::assert_snapshot!("help_top", help(&[]));
        for sub in [
            "task-exec",
            "service-exec",
            "cp",
            "debug",
            "port-forward",
            "wait",
            "action",
            "gc",
            "persist",
            "exec",
            "completions",
            "man",
        ] {
            let text = help(&[sub]);
            assert!(text.contains("Example"), "{sub} --help has no examples");
            insta::assert_snapshot!(format!("help_{sub}"), text);
        }
    }

    #[test]
    fn port_pairs_as_kubectl_writes_them() {
        assert_eq!(parse_port_pair("5432"), Ok((5432, 5432)));
        assert_eq!(parse_port_pair("8080:80"), Ok((8080, 80)));
        assert_eq!(parse_port_pair(":80"), Ok((0, 80)));
        assert_eq!(parse_port_pair("0:80"), Ok((0, 80)));
        for bad in ["", "80:", "x", "70000", "1:0", "0", "-1:80", "1:2:3"] {
            assert!(parse_port_pair(bad).is_err(), "{bad:?}");
        }
    }

    /// Usage errors as users see them (the exit code, 125, is asserted end to end).
    #[test]
    fn usage_errors() {
        let err = |args: &[&str]| {
            let mut all = vec!["swarm-exec"];
            all.extend_from_slice(args);
            crate::message::clip(
                Cli::try_parse_from(all)
                    .unwrap_err()
                    .render()
                    .to_string()
                    .trim_end(),
            )
        };
        insta::assert_snapshot!("error_bad_task", err(&["task-exec", "web.1; ls", "true"]));
        insta::assert_snapshot!(
            "error_zero_timeout",
            err(&["task-exec", "--timeout", "0", "web.1", "true"])
        );
        insta::assert_snapshot!("error_no_command", err(&["task-exec", "web.1"]));
        insta::assert_snapshot!(
            "error_huge_task",
            err(&["task-exec", &"x".repeat(5000), "true"])
        );
    }
}
