//! The data bank as real, separate processes: one `alias-gateway`, some
//! `alias-processor`s and `alias-pusher`s and one `alias-sink`, all from the
//! release build, on their own namespace and storage directory, against the
//! local Redis and RabbitMQ.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where the binaries are and which servers to use.
#[derive(Debug, Clone)]
pub struct Env {
    /// Directory of `alias-gateway`, `alias-processor`, … (`target/release`).
    pub bin_dir: PathBuf,
    /// `ALIAS_REDIS_URL` of the services.
    pub redis_url: String,
    /// `ALIAS_AMQP_URL` of the services.
    pub amqp_url: String,
}

/// One running process.
#[derive(Debug)]
pub struct Service {
    /// `gateway`, `processor 1`, …
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Service {
    fn spawn(
        env: &Env,
        bin: &str,
        name: &str,
        vars: &[(String, String)],
        args: &[String],
        log_dir: &Path,
    ) -> Result<Service> {
        let log = log_dir.join(format!("{}.log", name.replace(' ', "-")));
        let out = std::fs::File::create(&log)?;
        let path = env.bin_dir.join(bin);
        let child = Command::new(&path)
            .args(args)
            .env_remove("ALIAS_CONFIG")
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .env("ALIAS_LOG_JSON", "true")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        Ok(Service {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// Peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// CPU seconds (user + system) the process has used so far.
    pub fn cpu_s(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // The fields after the command name, which ends at the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let mut fields = rest.split_whitespace().skip(11);
        let utime: f64 = fields.next()?.parse().ok()?;
        let stime: f64 = fields.next()?.parse().ok()?;
        // USER_HZ is 100 on Linux.
        Some((utime + stime) / 100.0)
    }

    /// Waits until the log holds `needle`, or fails when the process exits
    /// or the deadline passes.
    fn wait_log(&mut self, needle: &str, deadline: Instant) -> Result<()> {
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}): {}", self.name, tail(&text));
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not log {needle:?} in time: {}",
                    self.name,
                    tail(&text)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "{} exited ({status}): {}",
                self.name,
                tail(&std::fs::read_to_string(&self.log).unwrap_or_default())
            )),
            _ => None,
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(600);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(start);
    text[start..].trim().to_owned()
}

/// A free loopback port (bound then released: the service binds it next).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `GET url` answers 2xx.
pub async fn wait_http(http: &reqwest::Client, url: &str, deadline: Instant) -> Result<()> {
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer in time");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A sink process alone (the push benchmark's receiver).
#[derive(Debug)]
pub struct SinkProcess {
    /// `http://127.0.0.1:{port}`.
    pub url: String,
    /// Its data directory.
    pub dir: PathBuf,
    /// The process.
    pub service: Service,
}

impl SinkProcess {
    /// Starts `alias-sink` storing under `dir`, taking chunks up to `max_chunk`.
    pub async fn start(env: &Env, dir: &Path, name: &str, max_chunk: u64) -> Result<SinkProcess> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let data = dir.join("data");
        let args = vec![
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--dir".to_owned(),
            data.display().to_string(),
            "--max-chunk".to_owned(),
            max_chunk.to_string(),
            // The sink receives for the benchmark's client only.
            "--client-key".to_owned(),
            protocol::anychain::public_key_b64(&crate::client::client_key()),
        ];
        let service = Service::spawn(env, "alias-sink", name, &[], &args, dir)?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_http(
            &http,
            &format!("{url}/healthz"),
            Instant::now() + Duration::from_secs(30),
        )
        .await?;
        Ok(SinkProcess {
            url,
            dir: data,
            service,
        })
    }

    /// The push base (`{url}/alias/push/`).
    pub fn push_base(&self) -> String {
        format!("{}/alias/push/", self.url)
    }

    /// Where the sink keeps a received file.
    pub fn file_path(&self, id: &str, file: &str) -> PathBuf {
        self.dir.join(id).join("data").join(file)
    }
}

/// A whole data bank and its client.
#[derive(Debug)]
pub struct Stack {
    /// `http://127.0.0.1:{port}` of the gateway.
    pub gateway: String,
    /// The client.
    pub sink: SinkProcess,
    /// The namespace of every key and queue.
    pub namespace: String,
    /// The resource storage directory.
    pub storage: PathBuf,
    services: Vec<Service>,
    env: Env,
}

impl Stack {
    /// Starts a gateway, `processors` processors, `pushers` pushers and a
    /// sink under `dir`, and waits until each is ready (the gateway and the
    /// sink answer, every worker logged that it consumes its queue).
    pub async fn start(
        env: &Env,
        dir: &Path,
        label: &str,
        processors: usize,
        pushers: usize,
        extra: &[(&str, &str)],
    ) -> Result<Stack> {
        std::fs::create_dir_all(dir)?;
        let namespace = format!("bench-{label}-{}", uuid::Uuid::new_v4().simple());
        let storage = dir.join("storage");
        let sink = SinkProcess::start(env, &dir.join("sink"), "sink", 16 << 30).await?;
        let port = free_port()?;
        let gateway = format!("http://127.0.0.1:{port}");
        let mut vars: Vec<(String, String)> = [
            ("ALIAS_REDIS_URL", env.redis_url.as_str()),
            ("ALIAS_AMQP_URL", env.amqp_url.as_str()),
            ("ALIAS_NAMESPACE", namespace.as_str()),
            ("ALIAS_STORAGE_URL", &storage.display().to_string()),
            ("ALIAS_LISTEN", &format!("127.0.0.1:{port}")),
            ("ALIAS_PUBLIC_ORIGIN", &gateway),
            ("ALIAS_PUSH_ALLOW", "127.0.0.0/8"),
            ("ALIAS_RATE_PER_SEC", "1000000"),
            ("ALIAS_MAX_STREAMS", "100000"),
            ("ALIAS_MAX_STREAMS_PER_ADDR", "100000"),
            ("ALIAS_MAX_WAITS", "100000"),
            ("ALIAS_MAX_WAITS_PER_ADDR", "100000"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut services = Vec::new();
        services.push(Service::spawn(
            env,
            "alias-gateway",
            "gateway",
            &vars,
            &[],
            dir,
        )?);
        let deadline = Instant::now() + Duration::from_secs(60);
        for (bin, role, n) in [
            ("alias-processor", "processor", processors),
            ("alias-pusher", "pusher", pushers),
        ] {
            for i in 1..=n {
                let work = dir.join(format!("{role}-{i}-work"));
                std::fs::create_dir_all(&work)?;
                let mut v = vars.clone();
                v.push(("ALIAS_WORK_DIR".into(), work.display().to_string()));
                services.push(Service::spawn(
                    env,
                    bin,
                    &format!("{role} {i}"),
                    &v,
                    &[],
                    dir,
                )?);
            }
        }
        let http = reqwest::Client::new();
        wait_http(&http, &format!("{gateway}/readyz"), deadline).await?;
        for s in services.iter_mut().skip(1) {
            s.wait_log("consuming", deadline)?;
        }
        Ok(Stack {
            gateway,
            sink,
            namespace,
            storage,
            services,
            env: env.clone(),
        })
    }

    /// Fails when a service has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for s in self.services.iter_mut().chain([&mut self.sink.service]) {
            if let Some(e) = s.exited() {
                bail!(e);
            }
        }
        Ok(())
    }

    /// Peak RSS of every service (KiB), read now.
    pub fn peaks(&self) -> Vec<(String, Option<u64>)> {
        self.services
            .iter()
            .chain([&self.sink.service])
            .map(|s| (s.name.clone(), s.peak_kib()))
            .collect()
    }

    /// CPU seconds used by each service so far, as one line.
    pub fn cpu_line(&self) -> String {
        self.services
            .iter()
            .chain([&self.sink.service])
            .filter_map(|s| s.cpu_s().map(|c| format!("{} {c:.2} s", s.name)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Stops every process and removes the namespace's keys and queues.
    pub async fn stop(mut self) -> Result<()> {
        for s in &mut self.services {
            s.stop();
        }
        self.sink.service.stop();
        let state = runtime::state::State::connect(
            &self.env.redis_url,
            &self.namespace,
            Duration::from_secs(60),
        )
        .await
        .map_err(|e| anyhow::anyhow!("redis: {e}"))?;
        state
            .purge_namespace()
            .await
            .map_err(|e| anyhow::anyhow!("redis purge: {e}"))?;
        let broker = runtime::mq::Broker::connect(&self.env.amqp_url, &self.namespace)
            .await
            .map_err(|e| anyhow::anyhow!("rabbitmq: {e}"))?;
        broker.delete_topology().await;
        Ok(())
    }
}
