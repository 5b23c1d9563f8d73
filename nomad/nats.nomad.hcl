# NATS JetStream: a 3-node cluster, one server per host, so streams with
# replicas = 3 survive the loss of any one node.
#
# Each Nomad client that may run NATS declares the host volume in its config:
#   host_volume "nats-jetstream" { path = "/srv/nats/jetstream" }
# The server name is the Nomad node name, so a restarted server comes back with
# the same identity and finds its own JetStream store on that host.

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
        args         = ["--config", "/local/nats.conf"]
      }

      volume_mount {
        volume      = "jetstream"
        destination = "/data/jetstream"
      }

      # Routes list every registered cluster member (healthy or not, so the
      # first servers can find each other); a server ignores the route to
      # itself. A membership change reloads the config with SIGHUP.
      template {
        destination   = "local/nats.conf"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          server_name: {{ env "node.unique.name" }}
          listen: 0.0.0.0:4222
          http: 0.0.0.0:8222
          lame_duck_duration: "20s"
          lame_duck_grace_period: "5s"

          jetstream {
            store_dir: "/data/jetstream"
            max_memory_store: 1G
            max_file_store: 100G
          }

          cluster {
            name: stockroom
            listen: 0.0.0.0:6222
            routes: [
          {{- range service "nats-cluster|any" }}
              nats-route://{{ .Address }}:{{ .Port }}
          {{- end }}
            ]
          }
        EOT
      }

      # SIGUSR2 puts the server in lame-duck mode: clients move to the other
      # servers over lame_duck_duration before it exits.
      kill_signal  = "SIGUSR2"
      kill_timeout = "30s"

      resources {
        cpu    = 1000
        memory = 2048
      }
    }
  }
}
