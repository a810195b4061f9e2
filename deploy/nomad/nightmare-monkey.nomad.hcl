# One nightmare-monkey per Nomad client: a system job running the binary installed from
# the .deb (raw_exec sees the node's processes). Guide: doc/guide/operations.md.
#   nomad job run deploy/nomad/nightmare-monkey.nomad.hcl
# The API token, etcd's password and the CA of etcd's certificate come from Nomad
# Variables:
#   nomad var put nomad/jobs/nightmare-monkey token=... etcd_password=... etcd_ca=@ca.pem
# The fleet: section makes the nodes one drill on etcd (guide: doc/guide/fleet.md).
job "nightmare-monkey" {
  type        = "system"
  datacenters = ["*"]

  group "monkey" {
    network {
      port "api" {
        static = 8080
      }
    }

    service {
      name     = "nightmare-monkey"
      port     = "api"
      provider = "nomad"

      check {
        type     = "http"
        path     = "/healthz"
        interval = "30s"
        timeout  = "2s"
      }
    }

    task "monkey" {
      driver = "raw_exec"

      config {
        command = "/usr/bin/nightmare-monkey"
        # The same seed on every node; the node's name labels its streams.
        args = ["--config", "${NOMAD_TASK_DIR}/config.ron", "--node", "${node.unique.name}", "--log-format", "json"]
      }

      env {
        STATE_DIRECTORY = "/var/lib/nightmare-monkey"
      }

      template {
        destination = "secrets/api-token"
        perms       = "0400"
        data        = "{{ with nomadVar \"nomad/jobs/nightmare-monkey\" }}{{ .token }}{{ end }}"
      }

      template {
        destination = "secrets/etcd-password"
        perms       = "0400"
        data        = "{{ with nomadVar \"nomad/jobs/nightmare-monkey\" }}{{ .etcd_password }}{{ end }}"
      }

      template {
        destination = "secrets/etcd-ca.crt"
        perms       = "0444"
        data        = "{{ with nomadVar \"nomad/jobs/nightmare-monkey\" }}{{ .etcd_ca }}{{ end }}"
      }

      template {
        destination = "local/config.ron"
        data        = <<-EOT
        (
            execute: false,
            seed: 20261125,
            window: (days: "1-5", time: "11:00-18:00"),
            http: (listen: "0.0.0.0:{{ env "NOMAD_PORT_api" }}", token_file: "{{ env "NOMAD_SECRETS_DIR" }}/api-token"),
            faults: {
                "process-kill": (plugin: "process-kill", config: (
                    exclude_names: ["^nomad$", "^consul$", "^containerd", "^dockerd$", "^systemd", "^sshd$", "^nightmare-monk"],
                )),
            },
            budget: (per_hour: 2, per_day: 10),
            // One drill for the whole fleet: one node faulted at a time, 6 faults an hour
            // and 5 minutes apart fleet-wide; `nightmare-monkey pause --fleet` stops all.
            fleet: (
                coordinator: Etcd(
                    endpoints: ["https://etcd-1.service.consul:2379", "https://etcd-2.service.consul:2379", "https://etcd-3.service.consul:2379"],
                    prefix: "/nightmare-monkey/staging",
                    username: "nightmare-monkey",
                    password_file: "{{ env "NOMAD_SECRETS_DIR" }}/etcd-password",
                    // etcd's server certificates are checked against this CA, so the
                    // password never crosses the network in clear.
                    ca_file: "{{ env "NOMAD_SECRETS_DIR" }}/etcd-ca.crt",
                    // Client certificates may replace the password (or go with it),
                    // each written to secrets/ by a template like the CA's (Variables
                    // etcd_cert, etcd_key):
                    //   cert_file: "{{ env "NOMAD_SECRETS_DIR" }}/etcd.crt",
                    //   key_file: "{{ env "NOMAD_SECRETS_DIR" }}/etcd.key",
                ),
                max_concurrent: 1,
                budget: (max: 6, per: "1h"),
                min_gap: "5m",
            ),
        )
        EOT
      }

      kill_timeout = "15s"

      resources {
        cpu    = 20
        memory = 32
      }
    }
  }
}
