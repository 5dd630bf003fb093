//! nginx with WebDAV on loopback, one process, owned by the harness: the embedded cache
//! serves its Nix and Bazel caches from it, and tests use it as a stand-in cache server.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cache::http;
use crate::error::{Error, IoContext, Result};
use crate::exec::process::OwnedChild;

const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Nginx {
    // Dropped first: the server stops before its folder is removed by the owner.
    _child: OwnedChild,
    addr: SocketAddr,
    root: PathBuf,
}

impl Nginx {
    /// Starts nginx with its config, logs, temp files and document root (`root()`) inside
    /// `dir`, serving and accepting uploads for everything under the root. Picks a free
    /// port and proves the server really bound it (another program may have taken the port
    /// between the check and nginx's bind): it must serve a token file.
    pub fn start(nginx: &Path, dir: &Path) -> Result<Nginx> {
        let root = dir.join("root");
        std::fs::create_dir_all(&root).context(|| format!("creating {}", root.display()))?;
        let token = format!("flywheel-bench-{}-{}", std::process::id(), nanos());
        std::fs::write(root.join("ready"), &token)
            .context(|| format!("writing {}", root.display()))?;
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port().context(|| "finding a free loopback port".into())?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, config(dir, &root, port))
                .context(|| format!("writing {}", conf.display()))?;
            let mut cmd = Command::new(nginx);
            cmd.arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf)
                // Before the config is read nginx logs to its compiled-in path; keep it private.
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let mut child = OwnedChild::spawn(cmd, "nginx")?;
            match wait_ready(&mut child, addr, &token) {
                Ok(()) => {
                    return Ok(Nginx {
                        _child: child,
                        addr,
                        root,
                    })
                }
                Err(e) => {
                    let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                    last_error = format!("{e}; error.log: {}", log.trim());
                }
            }
        }
        Err(Error::Environment(format!(
            "the embedded cache (nginx) did not start after {START_ATTEMPTS} attempts: {last_error}\n  fix: check that nginx works (`nginx -V` must list http_dav_module) and that loopback ports are free"
        )))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> url::Url {
        url::Url::parse(&format!("http://{}/{path}", self.addr))
            .expect("a loopback address and a plain path make a URL")
    }

    /// The folder the server stores uploads in.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn wait_ready(
    child: &mut OwnedChild,
    addr: SocketAddr,
    token: &str,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.exited() {
            return Err(format!("nginx exited ({status})"));
        }
        match http::get(addr, "/ready", Duration::from_secs(1)) {
            Ok(r) if r.status == 200 && r.body == token.as_bytes() => return Ok(()),
            Ok(r) => {
                return Err(format!(
                    "port {} is served by another program (HTTP {})",
                    addr.port(),
                    r.status
                ))
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("no answer on {addr} within {READY_TIMEOUT:?}: {e}")),
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// One process (`master_process off`), so there is no worker that changes user and
/// cannot read the private folder, and nothing outlives the process group.
fn config(dir: &Path, root: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/tmp-body;
  proxy_temp_path {d}/tmp-proxy;
  fastcgi_temp_path {d}/tmp-fastcgi;
  uwsgi_temp_path {d}/tmp-uwsgi;
  scgi_temp_path {d}/tmp-scgi;
  types {{ }}
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    location / {{
      dav_methods PUT;
      create_full_put_path on;
      dav_access user:rw;
      client_max_body_size 0;
    }}
  }}
}}
",
        root = root.display()
    )
}
