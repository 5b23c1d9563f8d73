# Vitess for the "stockroom" keyspace, sharded by merchant_id (xxhash; see
# nomad/vitess/vschema.json). This job runs the stateless parts: vtgate, the
# MySQL-protocol router every service connects to, and vtctld, the control
# plane that vtctldclient talks to. Topology lives in Consul (the agent on
# each Nomad client, 127.0.0.1:8500, hence host networking).
#
# vttablet + mysqld, and vtorc, run in their own job (vitess-tablets.nomad.hcl)
# because they are stateful and tied to hosts with data volumes. Both jobs run
# the same Vitess release, the one tools/vitess/vttestserver.sh builds. Flags
# are dashed, as Vitess 23+ names them (24 still takes underscored ones, with
# a deprecation warning; 25 will not), and logs are Vitess 24's default:
# structured JSON on stderr (glog's --logtostderr is deprecated).

variable "image" {
  type    = string
  default = "vitess/lite:v24.0.4"
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "cell" {
  type    = string
  default = "zone1"
}

locals {
  topo_flags = [
    "--topo-implementation", "consul",
    "--topo-global-server-address", "127.0.0.1:8500",
    "--topo-global-root", "vitess/global",
  ]
}

job "vitess" {
  datacenters = var.datacenters
  type        = "service"

  group "vtgate" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "15s"
      auto_revert      = true
    }

    network {
      mode = "host"
      port "mysql" {
        static = 15306
      }
      port "web" {
        static = 15001
      }
      port "grpc" {
        static = 15991
      }
    }

    service {
      name     = "vtgate-mysql"
      port     = "mysql"
      provider = "consul"

      check {
        name     = "vtgate-health"
        type     = "http"
        port     = "web"
        path     = "/debug/health"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "vtgate" {
      driver = "docker"

      config {
        image        = var.image
        network_mode = "host"
        command      = "vtgate"
        args = concat(local.topo_flags, [
          "--cell", var.cell,
          "--cells-to-watch", var.cell,
          "--port", "15001",
          "--grpc-port", "15991",
          "--service-map", "grpc-vtgateservice",
          "--mysql-server-port", "15306",
          "--mysql-auth-server-impl", "static",
          "--mysql-auth-server-static-file", "/secrets/vtgate-users.json",
          # Clients must use TLS (DATABASE_URL's ssl-mode=VERIFY_IDENTITY): the certificate
          # names vtgate-mysql.service.consul and is signed by the CA of nomad/jobs' db_ca.
          "--mysql-server-ssl-cert", "/secrets/vtgate.pem",
          "--mysql-server-ssl-key", "/secrets/vtgate.key",
          "--mysql-server-require-secure-transport",
          "--tablet-types-to-wait", "PRIMARY,REPLICA",
          # Reads go to primaries: a read after a write must see it.
          "--default-tablet-type", "PRIMARY",
          # Hold queries during a reparent instead of failing them.
          "--enable-buffer",
          # A transaction whose writes reach two shards is refused ("multi-db transaction attempted"), as on
          # the Vitess test tier (tools/vitess/vttestserver.sh): each of a merchant's transactions stays on its
          # shard. MULTI, the default, would commit such a transaction shard by shard, not atomically.
          "--transaction-mode", "SINGLE",
        ])
      }

      # One MySQL user per service, e.g.
      #   {"stockroom": [{"MysqlNativePassword": "*…", "UserData": "stockroom"}]}
      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/vitess" }}{{ .vtgate_users }}{{ end }}
        EOT
        destination = "secrets/vtgate-users.json"
        change_mode = "restart"
      }

      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/vitess" }}{{ .vtgate_tls_cert }}{{ end }}
        EOT
        destination = "secrets/vtgate.pem"
        change_mode = "restart"
      }

      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/vitess" }}{{ .vtgate_tls_key }}{{ end }}
        EOT
        destination = "secrets/vtgate.key"
        perms       = "0600"
        change_mode = "restart"
      }

      kill_timeout = "30s"

      resources {
        cpu    = 1000
        memory = 1024
      }
    }
  }

  group "vtctld" {
    count = 1

    network {
      mode = "host"
      port "web" {
        static = 15000
      }
      port "grpc" {
        static = 15999
      }
    }

    service {
      name     = "vtctld"
      port     = "grpc"
      provider = "consul"

      check {
        type     = "http"
        port     = "web"
        path     = "/debug/status"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "vtctld" {
      driver = "docker"

      config {
        image        = var.image
        network_mode = "host"
        command      = "vtctld"
        args = concat(local.topo_flags, [
          "--port", "15000",
          "--grpc-port", "15999",
          "--service-map", "grpc-vtctl,grpc-vtctld",
        ])
      }

      resources {
        cpu    = 250
        memory = 256
      }
    }
  }
}
