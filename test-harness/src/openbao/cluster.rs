//! OpenBao run highly available, as production runs it: several servers on integrated raft
//! storage, one active and the others standing by, all on loopback. The first node is
//! initialised and configured like [`OpenBao::start_persistent`]; the others join it over its
//! API and are unsealed with the same key. Every node has its own TLS listener for cert auth
//! and its own log; they share one audit log, as the replicated audit table requires.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{OpenBao, Role};
use crate::error::{Error, Result};
use crate::pki::Pki;
use crate::poll;
use crate::workdir::TestDir;

/// How long a leader election may take on a loaded machine.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The audit log every node appends to, in the test directory.
const AUDIT_LOG: &str = "openbao-cluster-audit.log";

/// A running cluster; every node is stopped when dropped.
pub struct OpenBaoCluster {
    nodes: Vec<OpenBao>,
}

impl OpenBaoCluster {
    /// Starts `size` nodes (`openbao-0`, `openbao-1`, … in the test directory's file names) and
    /// returns once `openbao-0` is active and every other node is an unsealed standby.
    pub fn start(dir: &TestDir, pki: &Pki, size: usize) -> Result<OpenBaoCluster> {
        if size == 0 {
            return Err(Error::unexpected(
                "starting an OpenBao cluster",
                "no nodes asked for",
            ));
        }
        let mut nodes = Vec::with_capacity(size);
        for index in 0..size {
            let stem = format!("openbao-{index}");
            nodes.push(OpenBao::spawn_on_raft(dir, pki, &stem, AUDIT_LOG)?);
        }
        let Some((leader, followers)) = nodes.split_first_mut() else {
            return Err(Error::unexpected(
                "starting an OpenBao cluster",
                "no nodes started",
            ));
        };
        leader.initialise()?;
        // Raft adds a joining node as a non-voter and autopilot promotes it once it has been
        // healthy for the stabilisation time (10 s by default); until then losing the leader
        // leaves no quorum to elect another.
        let autopilot = json!({ "server_stabilization_time": "1s" });
        leader.api_ok(
            "POST",
            "sys/storage/raft/autopilot/configuration",
            Some(&autopilot),
        )?;

        let join = json!({ "leader_api_addr": format!("http://{}", leader.api_addr()) });
        for node in followers {
            let joined = node.call(None, "PUT", "sys/storage/raft/join", Some(&join))?;
            if joined.status != 200 || joined.body["joined"] != Value::Bool(true) {
                return Err(Error::unexpected(
                    format!("joining {} to the raft cluster", node.api_addr()),
                    format!(
                        "status {}: {}",
                        joined.status,
                        super::errors(&joined.body).join("; ")
                    ),
                ));
            }
            node.root_token = leader.root_token.clone();
            node.unseal_key = leader.unseal_key.clone();
            node.unseal()?;
            node.wait_ready(Role::Standby)?;
        }
        let mut cluster = OpenBaoCluster { nodes };
        cluster.wait_for_voters()?;
        Ok(cluster)
    }

    /// Waits until the raft configuration counts every node as a voter, so that the cluster
    /// survives the loss of its leader.
    fn wait_for_voters(&mut self) -> Result<()> {
        let started = Instant::now();
        let size = self.nodes.len();
        let mut last = String::new();
        let voters = poll::until(ELECTION_TIMEOUT, || {
            let leader = self.nodes.first()?;
            let config = leader
                .api_ok("GET", "sys/storage/raft/configuration", None)
                .ok()?;
            let servers = config["data"]["config"]["servers"].as_array()?;
            let voting = servers
                .iter()
                .filter(|s| s["voter"] == Value::Bool(true))
                .count();
            last = format!("{voting} of {} servers vote", servers.len());
            (servers.len() == size && voting == size).then_some(())
        });
        voters.ok_or_else(|| Error::NotReady {
            what: "every OpenBao node as a raft voter".to_string(),
            waited: started.elapsed(),
            detail: last,
        })
    }

    /// Every node, in start order; stopped ones too.
    pub fn nodes(&self) -> &[OpenBao] {
        &self.nodes
    }

    /// The node `index`.
    pub fn node(&self, index: usize) -> Result<&OpenBao> {
        self.nodes
            .get(index)
            .ok_or_else(|| Error::unexpected("picking an OpenBao node", format!("no node {index}")))
    }

    /// Each node's TLS listener port, in start order.
    pub fn tls_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(OpenBao::tls_port).collect()
    }

    /// The index of the node that says it is active, if one does right now.
    pub fn active(&mut self) -> Option<usize> {
        // Standbys answer 429 and sealed nodes 503; only the active node answers 200.
        self.nodes.iter_mut().position(|node| {
            node.is_running()
                && node
                    .call(None, "GET", "sys/health", None)
                    .is_ok_and(|health| health.status == 200)
        })
    }

    /// Waits for a node other than `former` to become active and returns it, with how long
    /// the election took from the call.
    pub fn wait_for_new_active(&mut self, former: usize) -> Result<(usize, Duration)> {
        let started = Instant::now();
        let elected = poll::until(ELECTION_TIMEOUT, || self.active().filter(|&i| i != former));
        elected
            .map(|index| (index, started.elapsed()))
            .ok_or_else(|| Error::NotReady {
                what: "a new active OpenBao node".to_string(),
                waited: started.elapsed(),
                detail: self
                    .nodes
                    .iter()
                    .map(|node| format!("{}:\n{}", node.api_addr(), node.process.log_tail(10)))
                    .collect::<Vec<_>>()
                    .join("\n"),
            })
    }

    /// Stops node `index` (SIGTERM: an active node steps down as it shuts down).
    pub fn stop(&mut self, index: usize) -> Result<()> {
        let node = self.nodes.get_mut(index).ok_or_else(|| {
            Error::unexpected("stopping an OpenBao node", format!("no node {index}"))
        })?;
        node.stop();
        Ok(())
    }

    /// The audit entries of the whole cluster, from the log all nodes share.
    pub fn audit_entries(&self) -> Result<Vec<Value>> {
        match self.nodes.first() {
            Some(node) => node.audit_entries(),
            None => Ok(Vec::new()),
        }
    }
}
