//! `x0x`: one verb per daemon route (x0x's names), plus `start`, `stop` and `instances`.
//!
//! The CLI finds a daemon through the instance's `api.port` and `api-token` files (or `--api`
//! and `X0X_API_TOKEN`), prints readable text by default and the daemon's JSON with
//! `--json`, and on failure prints one line to stderr and exits non-zero.

pub mod client;
pub mod output;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use client::{CliError, Client};

/// The x0x-rs command line: drive a running x0xd.
#[derive(Debug, Parser)]
#[command(name = "x0x", version, about, propagate_version = true)]
pub struct Args {
    /// The named instance to talk to (data dir `x0x-<NAME>`).
    #[arg(long, global = true, value_name = "NAME")]
    pub name: Option<String>,
    /// The daemon's API address (`ip:port` or a URL); overrides api.port.
    #[arg(long, global = true, value_name = "ADDR")]
    pub api: Option<String>,
    /// Print the daemon's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every verb.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start x0xd in the background (or --foreground) and wait until it answers.
    Start {
        /// Config file passed to x0xd.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Run in this terminal instead of in the background.
        #[arg(long)]
        foreground: bool,
    },
    /// Stop the daemon (POST /shutdown).
    Stop,
    /// List local instances and whether they answer.
    Instances,
    /// GET /health.
    Health,
    /// GET /status.
    Status,
    /// GET /routes: every route with its CLI verb.
    Routes,
    /// This agent's identity (GET /agent), or a sub-command.
    Agent {
        /// What to do (default: show the identity).
        #[command(subcommand)]
        cmd: Option<AgentCmd>,
    },
    /// Re-announce the identity (POST /announce).
    Announce {
        /// Disclose the user id (needs --consent).
        #[arg(long)]
        include_user: bool,
        /// A human agreed to disclose the user id.
        #[arg(long)]
        consent: bool,
    },
    /// Connected peers (GET /peers).
    Peers,
    /// Publish a message (POST /publish).
    Publish {
        /// Topic.
        topic: String,
        /// Payload: text, or base64 with --base64.
        payload: String,
        /// The payload is already base64.
        #[arg(long)]
        base64: bool,
    },
    /// Subscribe to a topic (POST /subscribe); read messages with `x0x events`.
    Subscribe {
        /// Topic.
        topic: String,
    },
    /// End a subscription (DELETE /subscribe/:id).
    Unsubscribe {
        /// The subscription id.
        id: String,
    },
    /// Follow subscribed messages (GET /events, SSE).
    Events,
    /// Discovered agents.
    Agents {
        /// What to do.
        #[command(subcommand)]
        cmd: AgentsCmd,
    },
    /// Discovered machines.
    Machines {
        /// What to do.
        #[command(subcommand)]
        cmd: MachinesCmd,
    },
    /// Who is online (GET /presence), or a sub-command.
    Presence {
        /// What to do (default: the ids of the agents online).
        #[command(subcommand)]
        cmd: Option<PresenceCmd>,
    },
    /// Contacts and their trust levels.
    Contacts {
        /// What to do.
        #[command(subcommand)]
        cmd: ContactsCmd,
    },
    /// Replicated KV stores.
    Store {
        /// What to do.
        #[command(subcommand)]
        cmd: StoreCmd,
    },
    /// Replicated task lists.
    Tasks {
        /// What to do.
        #[command(subcommand)]
        cmd: TasksCmd,
    },
    /// Trust levels and the evaluator.
    Trust {
        /// What to do.
        #[command(subcommand)]
        cmd: TrustCmd,
    },
    /// Direct messages.
    Direct {
        /// What to do.
        #[command(subcommand)]
        cmd: DirectCmd,
    },
    /// Diagnostics.
    Diagnostics {
        /// What to show.
        #[command(subcommand)]
        cmd: DiagnosticsCmd,
    },
    /// Network state.
    Network {
        /// What to show.
        #[command(subcommand)]
        cmd: NetworkCmd,
    },
    /// WebSocket sessions (GET /ws/sessions).
    Ws {
        /// What to show.
        #[command(subcommand)]
        cmd: WsCmd,
    },
}

/// `x0x agent …`.
#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// GET /agent/user-id.
    UserId,
    /// This agent's card and link (GET /agent/card).
    Card {
        /// Name on the card.
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// Import a card or link (POST /agent/card/import).
    Import {
        /// `x0x://agent/…` or its base64.
        card: String,
        /// blocked, unknown, known or trusted.
        #[arg(long, default_value = "known")]
        trust: String,
    },
    /// Sign text with the agent key (POST /agent/sign).
    Sign {
        /// Text to sign.
        payload: String,
        /// Domain string bound into the signature.
        #[arg(long, default_value = "")]
        context: String,
    },
    /// Check a signature (POST /agent/verify).
    Verify {
        /// Signed text.
        payload: String,
        /// Signature, base64.
        signature: String,
        /// Signer's agent id.
        #[arg(long)]
        agent_id: Option<String>,
        /// Signer's public key, base64.
        #[arg(long)]
        public_key: Option<String>,
        /// Domain string.
        #[arg(long, default_value = "")]
        context: String,
    },
}

/// `x0x agents …`.
#[derive(Debug, Subcommand)]
pub enum AgentsCmd {
    /// GET /agents/discovered.
    List {
        /// Include entries older than identity_ttl_secs.
        #[arg(long)]
        unfiltered: bool,
    },
    /// GET /agents/discovered/:id.
    Get {
        /// Agent id.
        id: String,
        /// Look it up if it is not cached.
        #[arg(long)]
        wait: bool,
    },
    /// POST /agents/find/:id.
    Find {
        /// Agent id.
        id: String,
    },
    /// GET /agents/reachability/:id.
    Reachability {
        /// Agent id.
        id: String,
    },
    /// GET /agents/:id/machine.
    Machine {
        /// Agent id.
        id: String,
    },
    /// GET /users/:id/agents.
    ByUser {
        /// User id.
        user_id: String,
    },
}

/// `x0x contacts …`.
#[derive(Debug, Subcommand)]
pub enum ContactsCmd {
    /// GET /contacts.
    List,
    /// POST /contacts.
    Add {
        /// Agent id.
        agent_id: String,
        /// blocked, unknown, known or trusted.
        #[arg(long, default_value = "known")]
        trust: String,
        /// A name for people.
        #[arg(long)]
        label: Option<String>,
    },
    /// PATCH /contacts/:id.
    Update {
        /// Agent id.
        agent_id: String,
        /// New trust level.
        #[arg(long)]
        trust: Option<String>,
        /// New identity type: anonymous, known, trusted or pinned.
        #[arg(long)]
        identity_type: Option<String>,
    },
    /// DELETE /contacts/:id.
    Remove {
        /// Agent id.
        agent_id: String,
    },
    /// POST /contacts/:id/revoke (permanent).
    Revoke {
        /// Agent id.
        agent_id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// GET /contacts/:id/revocations.
    Revocations {
        /// Agent id.
        agent_id: String,
    },
}

/// `x0x presence …`.
#[derive(Debug, Subcommand)]
pub enum PresenceCmd {
    /// GET /presence/online: agents online, with their records.
    Online,
    /// GET /presence/foaf: walk friends of friends (known and trusted contacts shown).
    Foaf {
        /// Hops.
        #[arg(long, default_value_t = 3)]
        ttl: u8,
        /// How long to gather, milliseconds (at most 60 000).
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// GET /presence/find/:id: look one agent up among friends of friends.
    Find {
        /// Agent id.
        agent_id: String,
        /// Hops.
        #[arg(long, default_value_t = 3)]
        ttl: u8,
        /// How long to look, milliseconds (at most 60 000).
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// GET /presence/status/:id: whether an agent is online here.
    Status {
        /// Agent id.
        agent_id: String,
    },
    /// GET /presence/events: follow online and offline events (SSE).
    Events,
}

/// `x0x store …`: a store's id is its topic.
#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// GET /stores: the KV stores open here.
    List,
    /// POST /stores: create a store owned by this agent.
    Create {
        /// Name.
        name: String,
        /// Topic (and id).
        topic: String,
        /// `signed` (only this agent writes) or `allowlisted`.
        #[arg(long, default_value = "signed")]
        policy: String,
        /// An agent (64 hex) allowed to write under `allowlisted`; repeatable.
        #[arg(long)]
        allow: Vec<String>,
    },
    /// POST /stores/:id/join: join a store and catch up.
    Join {
        /// Topic.
        topic: String,
        /// The owner to expect (64 hex).
        #[arg(long)]
        owner: Option<String>,
    },
    /// GET /stores/:id/keys.
    Keys {
        /// Topic.
        topic: String,
    },
    /// GET /stores/:id/:key (prints the value decoded as text with `--text`).
    Get {
        /// Topic.
        topic: String,
        /// Key.
        key: String,
    },
    /// PUT /stores/:id/:key.
    Put {
        /// Topic.
        topic: String,
        /// Key.
        key: String,
        /// Value (text, or base64 with --base64).
        value: String,
        /// The value is already base64.
        #[arg(long)]
        base64: bool,
        /// Media type.
        #[arg(long, default_value = "application/octet-stream")]
        content_type: String,
    },
    /// DELETE /stores/:id/:key.
    Rm {
        /// Topic.
        topic: String,
        /// Key.
        key: String,
    },
}

/// `x0x tasks …`: a list's id is its topic.
#[derive(Debug, Subcommand)]
pub enum TasksCmd {
    /// GET /task-lists: the task lists open here.
    Lists,
    /// POST /task-lists: create the list on a topic (or join the one others use).
    Create {
        /// Name.
        name: String,
        /// Topic (and id).
        topic: String,
    },
    /// GET /task-lists/:id/tasks.
    List {
        /// Topic.
        topic: String,
    },
    /// POST /task-lists/:id/tasks.
    Add {
        /// Topic.
        topic: String,
        /// Title.
        title: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// PATCH /task-lists/:id/tasks/:tid {action: claim}.
    Claim {
        /// Topic.
        topic: String,
        /// Task id (64 hex).
        task_id: String,
    },
    /// PATCH /task-lists/:id/tasks/:tid {action: complete}.
    Complete {
        /// Topic.
        topic: String,
        /// Task id (64 hex).
        task_id: String,
    },
}

/// `x0x trust …`.
#[derive(Debug, Subcommand)]
pub enum TrustCmd {
    /// POST /contacts/trust.
    Set {
        /// Agent id.
        agent_id: String,
        /// blocked, unknown, known or trusted.
        level: String,
    },
    /// POST /trust/evaluate.
    Evaluate {
        /// Agent id.
        agent_id: String,
        /// Machine id.
        machine_id: String,
    },
}

/// `x0x machines …`.
#[derive(Debug, Subcommand)]
pub enum MachinesCmd {
    /// GET /contacts/:id/machines: a contact's recorded machines.
    List {
        /// Agent id.
        agent_id: String,
    },
    /// POST /contacts/:id/machines.
    Add {
        /// Agent id.
        agent_id: String,
        /// Machine id.
        machine_id: String,
        /// A name for people.
        #[arg(long)]
        label: Option<String>,
        /// Pin it at once.
        #[arg(long)]
        pin: bool,
    },
    /// DELETE /contacts/:id/machines/:machine_id.
    Remove {
        /// Agent id.
        agent_id: String,
        /// Machine id.
        machine_id: String,
    },
    /// POST /contacts/:id/machines/:machine_id/pin.
    Pin {
        /// Agent id.
        agent_id: String,
        /// Machine id.
        machine_id: String,
    },
    /// DELETE /contacts/:id/machines/:machine_id/pin.
    Unpin {
        /// Agent id.
        agent_id: String,
        /// Machine id.
        machine_id: String,
    },
    /// GET /machines/discovered.
    Discovered {
        /// Include entries older than identity_ttl_secs.
        #[arg(long)]
        unfiltered: bool,
    },
    /// GET /machines/discovered/:id.
    Get {
        /// Machine id.
        id: String,
    },
    /// GET /users/:id/machines.
    ByUser {
        /// User id.
        user_id: String,
    },
}

/// `x0x direct …`.
#[derive(Debug, Subcommand)]
pub enum DirectCmd {
    /// POST /agents/connect.
    Connect {
        /// Agent id.
        agent_id: String,
    },
    /// POST /direct/send.
    Send {
        /// Recipient agent id.
        agent_id: String,
        /// Payload: text, or base64 with --base64.
        payload: String,
        /// The payload is already base64.
        #[arg(long)]
        base64: bool,
    },
    /// GET /direct/connections.
    Connections,
    /// Follow direct messages (GET /direct/events, SSE).
    Events,
}

/// `x0x diagnostics …`.
#[derive(Debug, Subcommand)]
pub enum DiagnosticsCmd {
    /// GET /diagnostics/connectivity.
    Connectivity,
    /// GET /diagnostics/gossip.
    Gossip,
    /// GET /diagnostics/dm.
    Dm,
    /// GET /diagnostics/resources.
    Resources,
}

/// `x0x network …`.
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// GET /network/status.
    Status,
    /// GET /network/bootstrap-cache.
    Cache,
}

/// `x0x ws …`.
#[derive(Debug, Subcommand)]
pub enum WsCmd {
    /// GET /ws/sessions.
    Sessions,
}

fn text_b64(s: &str, already: bool) -> Result<String, CliError> {
    if already {
        STANDARD
            .decode(s)
            .map_err(|e| CliError::Usage(format!("payload is not valid base64: {e}")))?;
        Ok(s.to_string())
    } else {
        Ok(STANDARD.encode(s.as_bytes()))
    }
}

/// Runs the CLI; the process exit code.
pub fn run(args: Args) -> ExitCode {
    match dispatch(&args) {
        Ok(Some(v)) => {
            if args.json {
                println!("{v}");
            } else {
                print!("{}", output::render(&v));
            }
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("x0x: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &Args) -> Result<Option<Value>, CliError> {
    let name = args.name.as_deref();
    if let Some(n) = name {
        crate::config::validate_instance_name(n).map_err(|e| CliError::Usage(e.to_string()))?;
    }
    match &args.command {
        Command::Start { config, foreground } => {
            return start(args, config.as_deref(), *foreground);
        }
        Command::Instances => return Ok(Some(instances())),
        _ => {}
    }
    let c = Client::locate(name, args.api.as_deref())?;
    let id_path = |prefix: &str, id: &str, suffix: &str| format!("{prefix}{id}{suffix}");
    let v = match &args.command {
        Command::Start { .. } | Command::Instances => unreachable!("handled above"),
        Command::Stop => {
            // A reset after the answer still means it is stopping.
            match c.post("/shutdown", json!({})) {
                Ok(v) => v,
                Err(CliError::Unreachable { .. }) if c.get("/health").is_err() => {
                    json!({"ok": true, "message": "stopped"})
                }
                Err(e) => return Err(e),
            }
        }
        Command::Health => c.get("/health")?,
        Command::Status => c.get("/status")?,
        Command::Routes => c.get("/routes")?,
        Command::Agent { cmd: None } => c.get("/agent")?,
        Command::Agent { cmd: Some(cmd) } => match cmd {
            AgentCmd::UserId => c.get("/agent/user-id")?,
            AgentCmd::Card { display_name } => c.get(&format!(
                "/agent/card?display_name={}",
                percent(display_name)
            ))?,
            AgentCmd::Import { card, trust } => c.post(
                "/agent/card/import",
                json!({"card": card, "trust_level": trust}),
            )?,
            AgentCmd::Sign { payload, context } => c.post(
                "/agent/sign",
                json!({"payload": text_b64(payload, false)?, "context": context}),
            )?,
            AgentCmd::Verify {
                payload,
                signature,
                agent_id,
                public_key,
                context,
            } => c.post(
                "/agent/verify",
                json!({"payload": text_b64(payload, false)?, "signature": signature,
                       "agent_id": agent_id, "public_key": public_key, "context": context}),
            )?,
        },
        Command::Announce {
            include_user,
            consent,
        } => c.post(
            "/announce",
            json!({"include_user_identity": include_user, "human_consent": consent}),
        )?,
        Command::Peers => c.get("/peers")?,
        Command::Publish {
            topic,
            payload,
            base64,
        } => c.post(
            "/publish",
            json!({"topic": topic, "payload": text_b64(payload, *base64)?}),
        )?,
        Command::Subscribe { topic } => c.post("/subscribe", json!({"topic": topic}))?,
        Command::Unsubscribe { id } => c.call(
            "DELETE",
            &format!("/subscribe/{id}"),
            None,
            Duration::from_secs(10),
        )?,
        Command::Events => {
            follow(&c, "/events", args.json)?;
            return Ok(None);
        }
        Command::Agents { cmd } => match cmd {
            AgentsCmd::List { unfiltered } => {
                c.get(&format!("/agents/discovered?unfiltered={unfiltered}"))?
            }
            AgentsCmd::Get { id, wait } => {
                c.get(&format!("/agents/discovered/{id}?wait={wait}"))?
            }
            AgentsCmd::Find { id } => c.post(&id_path("/agents/find/", id, ""), json!({}))?,
            AgentsCmd::Reachability { id } => c.get(&id_path("/agents/reachability/", id, ""))?,
            AgentsCmd::Machine { id } => c.get(&id_path("/agents/", id, "/machine"))?,
            AgentsCmd::ByUser { user_id } => c.get(&id_path("/users/", user_id, "/agents"))?,
        },
        Command::Machines { cmd } => match cmd {
            MachinesCmd::Discovered { unfiltered } => {
                c.get(&format!("/machines/discovered?unfiltered={unfiltered}"))?
            }
            MachinesCmd::Get { id } => c.get(&id_path("/machines/discovered/", id, ""))?,
            MachinesCmd::ByUser { user_id } => c.get(&id_path("/users/", user_id, "/machines"))?,
            MachinesCmd::List { agent_id } => {
                c.get(&id_path("/contacts/", agent_id, "/machines"))?
            }
            MachinesCmd::Add {
                agent_id,
                machine_id,
                label,
                pin,
            } => c.post(
                &id_path("/contacts/", agent_id, "/machines"),
                json!({"machine_id": machine_id, "label": label, "pinned": pin.then_some(true)}),
            )?,
            MachinesCmd::Remove {
                agent_id,
                machine_id,
            } => c.call(
                "DELETE",
                &format!("/contacts/{agent_id}/machines/{machine_id}"),
                None,
                Duration::from_secs(10),
            )?,
            MachinesCmd::Pin {
                agent_id,
                machine_id,
            } => c.post(
                &format!("/contacts/{agent_id}/machines/{machine_id}/pin"),
                json!({}),
            )?,
            MachinesCmd::Unpin {
                agent_id,
                machine_id,
            } => c.call(
                "DELETE",
                &format!("/contacts/{agent_id}/machines/{machine_id}/pin"),
                None,
                Duration::from_secs(10),
            )?,
        },
        Command::Contacts { cmd } => match cmd {
            ContactsCmd::List => c.get("/contacts")?,
            ContactsCmd::Add {
                agent_id,
                trust,
                label,
            } => c.post(
                "/contacts",
                json!({"agent_id": agent_id, "trust_level": trust, "label": label}),
            )?,
            ContactsCmd::Update {
                agent_id,
                trust,
                identity_type,
            } => c.call(
                "PATCH",
                &id_path("/contacts/", agent_id, ""),
                Some(&json!({"trust_level": trust, "identity_type": identity_type})),
                Duration::from_secs(10),
            )?,
            ContactsCmd::Remove { agent_id } => c.call(
                "DELETE",
                &id_path("/contacts/", agent_id, ""),
                None,
                Duration::from_secs(10),
            )?,
            ContactsCmd::Revoke { agent_id, reason } => c.post(
                &id_path("/contacts/", agent_id, "/revoke"),
                json!({"reason": reason}),
            )?,
            ContactsCmd::Revocations { agent_id } => {
                c.get(&id_path("/contacts/", agent_id, "/revocations"))?
            }
        },
        Command::Store { cmd } => match cmd {
            StoreCmd::List => c.get("/stores")?,
            StoreCmd::Create {
                name,
                topic,
                policy,
                allow,
            } => c.post(
                "/stores",
                json!({"name": name, "topic": topic, "policy": policy, "allow": allow}),
            )?,
            StoreCmd::Join { topic, owner } => c.post(
                &format!("/stores/{}/join", percent(topic)),
                json!({"topic": topic, "owner": owner}),
            )?,
            StoreCmd::Keys { topic } => c.get(&format!("/stores/{}/keys", percent(topic)))?,
            StoreCmd::Get { topic, key } => {
                c.get(&format!("/stores/{}/{}", percent(topic), percent(key)))?
            }
            StoreCmd::Put {
                topic,
                key,
                value,
                base64,
                content_type,
            } => c.call(
                "PUT",
                &format!("/stores/{}/{}", percent(topic), percent(key)),
                Some(&json!({"value": text_b64(value, *base64)?, "content_type": content_type})),
                Duration::from_secs(10),
            )?,
            StoreCmd::Rm { topic, key } => c.call(
                "DELETE",
                &format!("/stores/{}/{}", percent(topic), percent(key)),
                None,
                Duration::from_secs(10),
            )?,
        },
        Command::Tasks { cmd } => match cmd {
            TasksCmd::Lists => c.get("/task-lists")?,
            TasksCmd::Create { name, topic } => {
                c.post("/task-lists", json!({"name": name, "topic": topic}))?
            }
            TasksCmd::List { topic } => c.get(&format!("/task-lists/{}/tasks", percent(topic)))?,
            TasksCmd::Add {
                topic,
                title,
                description,
            } => c.post(
                &format!("/task-lists/{}/tasks", percent(topic)),
                json!({"title": title, "description": description}),
            )?,
            TasksCmd::Claim { topic, task_id } | TasksCmd::Complete { topic, task_id } => {
                let action = if matches!(cmd, TasksCmd::Claim { .. }) {
                    "claim"
                } else {
                    "complete"
                };
                c.call(
                    "PATCH",
                    &format!("/task-lists/{}/tasks/{}", percent(topic), percent(task_id)),
                    Some(&json!({"action": action})),
                    Duration::from_secs(10),
                )?
            }
        },
        Command::Trust { cmd } => match cmd {
            TrustCmd::Set { agent_id, level } => c.post(
                "/contacts/trust",
                json!({"agent_id": agent_id, "level": level}),
            )?,
            TrustCmd::Evaluate {
                agent_id,
                machine_id,
            } => c.post(
                "/trust/evaluate",
                json!({"agent_id": agent_id, "machine_id": machine_id}),
            )?,
        },
        Command::Direct { cmd } => match cmd {
            DirectCmd::Connect { agent_id } => {
                c.post("/agents/connect", json!({"agent_id": agent_id}))?
            }
            DirectCmd::Send {
                agent_id,
                payload,
                base64,
            } => c.post(
                "/direct/send",
                json!({"agent_id": agent_id, "payload": text_b64(payload, *base64)?}),
            )?,
            DirectCmd::Connections => c.get("/direct/connections")?,
            DirectCmd::Events => {
                follow(&c, "/direct/events", args.json)?;
                return Ok(None);
            }
        },
        Command::Presence { cmd: None } => c.get("/presence")?,
        Command::Presence { cmd: Some(cmd) } => match cmd {
            PresenceCmd::Online => c.get("/presence/online")?,
            PresenceCmd::Foaf { ttl, timeout_ms } => c.call(
                "GET",
                &format!("/presence/foaf?ttl={ttl}&timeout_ms={timeout_ms}"),
                None,
                walk_budget(*timeout_ms),
            )?,
            PresenceCmd::Find {
                agent_id,
                ttl,
                timeout_ms,
            } => c.call(
                "GET",
                &format!("/presence/find/{agent_id}?ttl={ttl}&timeout_ms={timeout_ms}"),
                None,
                walk_budget(*timeout_ms),
            )?,
            PresenceCmd::Status { agent_id } => {
                c.get(&id_path("/presence/status/", agent_id, ""))?
            }
            PresenceCmd::Events => {
                follow(&c, "/presence/events", args.json)?;
                return Ok(None);
            }
        },
        Command::Diagnostics { cmd } => match cmd {
            DiagnosticsCmd::Connectivity => c.get("/diagnostics/connectivity")?,
            DiagnosticsCmd::Gossip => c.get("/diagnostics/gossip")?,
            DiagnosticsCmd::Dm => c.get("/diagnostics/dm")?,
            DiagnosticsCmd::Resources => c.get("/diagnostics/resources")?,
        },
        Command::Network { cmd } => match cmd {
            NetworkCmd::Status => c.get("/network/status")?,
            NetworkCmd::Cache => c.get("/network/bootstrap-cache")?,
        },
        Command::Ws {
            cmd: WsCmd::Sessions,
        } => c.get("/ws/sessions")?,
    };
    Ok(Some(v))
}

/// How long the CLI waits for a presence walk of `timeout_ms`: the walk plus a margin.
fn walk_budget(timeout_ms: u64) -> Duration {
    Duration::from_millis(timeout_ms.min(60_000)) + Duration::from_secs(10)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prints each event of an SSE stream: the JSON with `--json`, else a readable line.
fn follow(c: &Client, path: &str, json_out: bool) -> Result<(), CliError> {
    c.stream(path, |v| {
        if json_out {
            println!("{v}");
            return;
        }
        let d = v.get("data").unwrap_or(v);
        if let Some(what) = d.get("event").and_then(Value::as_str) {
            // A presence event: online (reachable or not) or offline (why).
            let id = d.get("agent_id").and_then(Value::as_str).unwrap_or("?");
            let note = match (d.get("reachable"), d.get("reason")) {
                (Some(Value::Bool(true)), _) => " (connected)".to_string(),
                (_, Some(Value::String(r))) => format!(" ({r})"),
                _ => String::new(),
            };
            println!("{what} {id}{note}");
            return;
        }
        let payload = d
            .get("payload")
            .and_then(Value::as_str)
            .and_then(|p| STANDARD.decode(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let from = d.get("sender").and_then(Value::as_str).unwrap_or("?");
        match d.get("topic").and_then(Value::as_str) {
            Some(t) => println!("[{t}] {}: {payload}", &from[..from.len().min(16)]),
            None => println!("{}: {payload}", &from[..from.len().min(16)]),
        }
    })
}

/// `x0x start`: spawns x0xd (next to this binary, else on PATH) and waits for `/health`.
fn start(
    args: &Args,
    config: Option<&std::path::Path>,
    foreground: bool,
) -> Result<Option<Value>, CliError> {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("x0xd")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "x0xd".into());
    let mut cmd = std::process::Command::new(&exe);
    if let Some(n) = &args.name {
        cmd.arg("--name").arg(n);
    }
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    if foreground {
        let status = cmd
            .status()
            .map_err(|e| CliError::Usage(format!("cannot run {}: {e}", exe.display())))?;
        return if status.success() {
            Ok(None)
        } else {
            Err(CliError::Usage(format!("x0xd exited with {status}")))
        };
    }
    let dir = crate::config::instance_dir(args.name.as_deref());
    // A stale api.port from a crash must not be mistaken for the new daemon.
    crate::files::remove_api_port(&dir);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::Usage(format!("cannot run {}: {e}", exe.display())))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CliError::Usage(format!(
                "x0xd exited at start with {status}; run `x0x start --foreground` to see why"
            )));
        }
        if crate::files::read_api_port(&dir).is_some()
            && let Ok(c) = Client::locate(args.name.as_deref(), args.api.as_deref())
            && let Ok(h) = c.get("/health")
        {
            return Ok(Some(
                json!({"ok": true, "started": true, "api": c.base, "pid": child.id(), "health": h}),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(CliError::Usage(
        "x0xd did not answer /health within 10 s".into(),
    ))
}

/// `x0x instances`: every `x0x` and `x0x-*` data dir with an `api.port`.
fn instances() -> Value {
    let base = crate::config::data_base();
    let mut list = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&base) {
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n == "x0x" || n.starts_with("x0x-"))
            .collect();
        names.sort();
        for n in names {
            let Some(addr) = crate::files::read_api_port(&base.join(&n)) else {
                continue;
            };
            let inst = n.strip_prefix("x0x-").map(str::to_string);
            let running = Client::locate(inst.as_deref(), Some(&addr.to_string()))
                .and_then(|c| c.call("GET", "/health", None, Duration::from_secs(2)))
                .is_ok();
            list.push(json!({
                "name": inst.unwrap_or_else(|| "(default)".into()),
                "api": addr.to_string(),
                "status": if running { "running" } else { "stale" },
            }));
        }
    }
    json!({"ok": true, "instances": list})
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_routes_cli_verb_exists() {
        let root = Args::command();
        for r in crate::api::ROUTES.iter().filter(|r| r.cli != "-") {
            let mut cmd = &root;
            for word in r.cli.split(' ') {
                cmd = cmd.find_subcommand(word).unwrap_or_else(|| {
                    panic!(
                        "`x0x {}` ({} {}) is not a CLI verb",
                        r.cli, r.method, r.path
                    )
                });
            }
        }
    }

    #[test]
    fn percent_encoding_keeps_unreserved() {
        assert_eq!(percent("a b/é"), "a%20b%2F%C3%A9");
    }
}
