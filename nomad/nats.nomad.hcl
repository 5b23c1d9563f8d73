# NATS JetStream: a 3-node cluster, one server per host, so streams with
# replicas = 3 survive the loss of any one node.
#
# Each Nomad client that may run NATS declares the host volume in its config:
#   host_volume "nats-jetstream" { path = "/srv/nats/jetstream" }
# The server name is the Nomad node name, so a restarted server comes back with
# the same identity and finds its own JetStream store on that host.
#
# Clients connect over TLS (tls://nats.service.consul:4222) as one user per
# client job (bulk, search, webhooks), password-authenticated; servers route to
# each other over mutual TLS. Secrets live in Nomad Variables, never in this
# file: the server certificate (SANs nats.service.consul and each node's
# address), its key, the CA, and the users' bcrypt hashes (`nats server passwd`):
#   nomad var put nomad/jobs/nats tls_cert=@server.pem tls_key=@server.key tls_ca=@ca.pem \
#     bulk_password_hash='$2a$11$...' search_password_hash='$2a$11$...' webhooks_password_hash='$2a$11$...'
# Each client job keeps its plain password in its own variable (nats_password)
# and the CA in the variable every job reads (nomad/jobs, nats_ca).

variable "image" {
  type    = string
  default = "nats:2.11-alpine"
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

job "nats" {
  datacenters = var.datacenters
  type        = "service"

  group "nats" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    # One server at a time, and only once the restarted one is healthy again
    # (JetStream has caught up): the cluster keeps its quorum throughout.
    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "30s"
      healthy_deadline = "5m"
      auto_revert      = true
    }

    volume "jetstream" {
      type      = "host"
      source    = "nats-jetstream"
      read_only = false
    }

    network {
      mode = "host"
      port "client" {
        static = 4222
      }
      port "cluster" {
        static = 6222
      }
      port "monitor" {
        static = 8222
      }
    }

    service {
      name     = "nats"
      port     = "client"
      provider = "consul"

      check {
        name     = "jetstream-healthz"
        type     = "http"
        port     = "monitor"
        path     = "/healthz?js-enabled-only=true"
        interval = "10s"
        timeout  = "2s"
      }
    }

    service {
      name     = "nats-cluster"
      port     = "cluster"
      provider = "consul"

      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "nats" {
      driver = "docker"

      config {
        image        = var.image
        network_mode = "host"
        args         = ["--config", "/secrets/nats.conf"]
      }

      volume_mount {
        volume      = "jetstream"
        destination = "/data/jetstream"
      }

      # The server's certificate and key, and the CA that signed the servers'
      # certificates (routes verify each other with it).
      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/nats" }}{{ .tls_cert }}{{ end }}
        EOT
        destination = "secrets/server.pem"
        change_mode = "signal"
        change_signal = "SIGHUP"
      }

      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/nats" }}{{ .tls_key }}{{ end }}
        EOT
        destination = "secrets/server.key"
        perms       = "0600"
        change_mode = "signal"
        change_signal = "SIGHUP"
      }

      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/nats" }}{{ .tls_ca }}{{ end }}
        EOT
        destination = "secrets/ca.pem"
        change_mode = "signal"
        change_signal = "SIGHUP"
      }

      # Routes list every registered cluster member (healthy or not, so the
      # first servers can find each other); a server ignores the route to
      # itself. A membership change, a new certificate or a changed password
      # reloads the config with SIGHUP. In secrets/: it holds the users' hashes.
      template {
        destination   = "secrets/nats.conf"
        perms         = "0600"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          server_name: {{ env "node.unique.name" }}
          listen: 0.0.0.0:4222
          http: 0.0.0.0:8222
          lame_duck_duration: "30s"
          lame_duck_grace_period: "5s"

          # Clients: TLS only.
          tls {
            cert_file: "/secrets/server.pem"
            key_file: "/secrets/server.key"
            ca_file: "/secrets/ca.pem"
            timeout: 2
          }

          # One user per client job; passwords as bcrypt hashes.
          authorization {
            users: [
          {{- with nomadVar "nomad/jobs/nats" }}
              { user: "bulk", password: "{{ .bulk_password_hash }}" }
              { user: "search", password: "{{ .search_password_hash }}" }
              { user: "webhooks", password: "{{ .webhooks_password_hash }}" }
          {{- end }}
            ]
          }

          jetstream {
            store_dir: "/data/jetstream"
            max_memory_store: 1G
            max_file_store: 100G
          }

          cluster {
            name: stockroom
            listen: 0.0.0.0:6222
            # Routes: mutual TLS, each server's certificate signed by the CA.
            tls {
              cert_file: "/secrets/server.pem"
              key_file: "/secrets/server.key"
              ca_file: "/secrets/ca.pem"
              verify: true
              timeout: 2
            }
            routes: [
          {{- range service "nats-cluster|any" }}
              nats-route://{{ .Address }}:{{ .Port }}
          {{- end }}
            ]
          }
        EOT
      }

      # SIGUSR2 puts the server in lame-duck mode: clients move to the other
      # servers over lame_duck_duration (30 s, the least nats-server accepts)
      # after lame_duck_grace_period, then it exits: kill_timeout covers both.
      kill_signal  = "SIGUSR2"
      kill_timeout = "45s"

      resources {
        cpu    = 1000
        memory = 2048
      }
    }
  }
}
