# The catalog API (stockroom.catalog.v1, with stockroom.notify.v1 and stockroom.account.v1): gRPC, gRPC-Web and Connect on one port.
#
# Driver: docker, with the image as a variable. CI builds one image per commit:
# the repository after `npm ci` (Node 24 comes with it as the `node` package),
# WORKDIR /app. Every service runs from that same image with its own command.
# exec + artifact was the alternative, but Nomad fetches artifacts with symlinks
# disabled, and npm workspaces and node_modules/.bin are symlinks.
#
# Secrets live in Nomad Variables, never in this file. The API runs as the
# service user (DML only; `npm run db:grants`), the migrate task as an admin
# user that may change the schema:
#   nomad var put nomad/jobs/catalog db_user=stockroom db_password=... \
#     migrate_db_user=stockroom_admin migrate_db_password=...
# The connection to vtgate is TLS (ssl-mode=VERIFY_IDENTITY in DATABASE_URL),
# verified with the CA in the shared variable nomad/jobs (db_ca), see nomad/README.md.

variable "image" {
  type        = string
  description = "Release image, e.g. registry.example.com/stockroom:<git sha>"
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

locals {
  # TLS to vtgate: ssl-mode=VERIFY_IDENTITY in DATABASE_URL, the CA that signed vtgate's certificate
  # rendered into the task's secrets/ from the variable every job may read (nomad/jobs, key db_ca).
  db_ca = <<-EOT
    {{ with nomadVar "nomad/jobs" }}{{ .db_ca }}{{ end }}
  EOT
  # vtgate speaks the MySQL protocol on 15306 (nomad/vitess.nomad.hcl); the
  # database is the Vitess keyspace. The API task renders this into its env.
  database_env = <<-EOT
    {{ with nomadVar "nomad/jobs/catalog" -}}
    DATABASE_URL=mysql://{{ .db_user }}:{{ .db_password | urlquery }}@vtgate-mysql.service.consul:15306/stockroom?ssl-mode=VERIFY_IDENTITY&ssl-ca=/secrets/db-ca.pem
    {{- end }}
  EOT
  # The migrate task's: the admin user, which may run DDL.
  migrate_database_env = <<-EOT
    {{ with nomadVar "nomad/jobs/catalog" -}}
    DATABASE_URL=mysql://{{ .migrate_db_user }}:{{ .migrate_db_password | urlquery }}@vtgate-mysql.service.consul:15306/stockroom?ssl-mode=VERIFY_IDENTITY&ssl-ca=/secrets/db-ca.pem
    {{- end }}
  EOT
}

job "catalog" {
  datacenters = var.datacenters
  type        = "service"

  group "api" {
    count = 3

    # Rolling deploys: one canary first; promoted once its gRPC health check
    # has passed for min_healthy_time; a deploy that never gets healthy is
    # rolled back to the last good version.
    update {
      max_parallel      = 1
      canary            = 1
      auto_promote      = true
      auto_revert       = true
      health_check      = "checks"
      min_healthy_time  = "15s"
      healthy_deadline  = "3m"
      progress_deadline = "10m"
    }

    spread {
      attribute = "${node.unique.id}"
    }

    network {
      port "grpc" {
        to = 8080
      }
      port "metrics" {
        to = 9464
      }
    }

    # Prometheus finds every instance through Consul (tag "prometheus"):
    # /metrics on the metrics port, see tools/observability/.
    service {
      name     = "catalog-metrics"
      port     = "metrics"
      provider = "consul"
      tags     = ["prometheus"]
    }

    service {
      name     = "catalog"
      port     = "grpc"
      provider = "consul"
      tags     = ["grpc", "connect"]

      # grpc.health.v1 Check on the whole server (""): it turns NOT_SERVING as
      # soon as SIGTERM starts the drain, so Consul stops routing here first.
      check {
        name            = "grpc-health"
        type            = "grpc"
        port            = "grpc"
        grpc_use_tls    = false
        interval        = "5s"
        timeout         = "2s"
        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    # Migrations run before every new allocation starts serving, while the
    # previous version still serves: they must be forward-only and online-safe
    # (expand, backfill, contract). Kysely's GET_LOCK makes concurrent runs wait
    # for each other, so a rolling deploy applies each migration once.
    task "migrate" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      config {
        image   = var.image
        command = "node"
        args    = ["tools/migrate.ts"]
      }

      template {
        data        = local.migrate_database_env
        destination = "secrets/database.env"
        env         = true
      }

      template {
        data        = local.db_ca
        destination = "secrets/db-ca.pem"
        change_mode = "restart"
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }

    task "api" {
      driver = "docker"

      config {
        image   = var.image
        command = "node"
        args    = ["services/catalog/src/main.ts"]
        ports   = ["grpc", "metrics"]
      }

      env {
        HOST                        = "0.0.0.0"
        PORT                        = "8080"
        DB_POOL_SIZE                = "20"
        LOG_LEVEL                   = "info"
        DRAIN_MS                    = "20000"
        AUTH_CACHE_MS               = "10000"
        MIGRATE_ON_START            = "false"
        METRICS_PORT                = "9464"
        HEALTH_PROBE_MS             = "1000"
        SLA_FLUSH_MS                = "10000"
        OTEL_BSP_MAX_QUEUE_SIZE     = "8192"
        OTEL_EXPORTER_OTLP_ENDPOINT = "http://jaeger-otlp.service.consul:4318"
        OTEL_RESOURCE_ATTRIBUTES    = "service.instance.id=${NOMAD_ALLOC_ID},deployment.environment=production"
      }

      template {
        data        = local.database_env
        destination = "secrets/database.env"
        env         = true
        # New credentials: restart one allocation at a time, each one draining.
        change_mode = "restart"
        splay       = "30s"
      }

      template {
        data        = local.db_ca
        destination = "secrets/db-ca.pem"
        change_mode = "restart"
      }

      # Consul deregisters first, then SIGTERM; the process reports NOT_SERVING,
      # drains in-flight calls for DRAIN_MS, closes the pool and flushes traces.
      # kill_timeout leaves room for all of it before Nomad sends SIGKILL.
      shutdown_delay = "5s"
      kill_signal    = "SIGTERM"
      kill_timeout   = "30s"

      resources {
        cpu        = 500
        memory     = 512
        memory_max = 1024
      }
    }
  }
}
