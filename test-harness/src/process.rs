//! A child process whose stdout and stderr go to a log file, and which is terminated (SIGTERM,
//! then SIGKILL) and reaped when dropped.
//!
//! Spawn from the thread that keeps the process: Envoy sets `PR_SET_PDEATHSIG`, which Linux fires
//! when the spawning *thread* exits, and children spawned here get the same treatment so that none
//! outlives a killed test binary.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long a process gets to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(2);

/// A running child; see the module docs.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Child,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
}

impl ManagedProcess {
    /// Spawns `command`, appending its output to `log_path`. `name` appears in errors.
    pub fn spawn(name: &str, mut command: Command, log_path: &Path) -> Result<ManagedProcess> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| Error::io(format!("opening {}", log_path.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io(format!("opening {}", log_path.display()), e))?;

        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }

        let child = command
            .spawn()
            .map_err(|e| Error::io(format!("starting {name}"), e))?;
        Ok(ManagedProcess {
            name: name.to_string(),
            child,
            log_path: log_path.to_path_buf(),
            exit: None,
        })
    }

    /// The operating system's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the process has logged so far, decoded lossily.
    pub fn log_contents(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::workdir::tail(&self.log_path, lines)
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.poll_exit().is_none()
    }

    /// The exit status, if the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.poll_exit()
    }

    /// Sends SIGTERM, waits up to 2 s, then sends SIGKILL; returns once the process is reaped.
    /// Calling it again is a no-op.
    pub fn stop(&mut self) {
        self.stop_with(libc::SIGTERM);
    }

    /// Like [`ManagedProcess::stop`], for programs that shut down promptly on another `signal`
    /// (PostgreSQL: SIGINT).
    /// Freezes the process (SIGSTOP): it keeps its sockets but answers nothing, like a hung
    /// server.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused process run on (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    pub fn stop_with(&mut self, signal: libc::c_int) {
        if self.poll_exit().is_some() {
            return;
        }

        self.signal(signal);
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            if self.poll_exit().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }

        // Errors here mean the process is already gone, which is the goal.
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.exit = Some(status);
        }
    }

    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    fn signal(&self, signal: libc::c_int) {
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill has no memory effects; the pid is our unreaped child, so it cannot have
        // been recycled for another process.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
