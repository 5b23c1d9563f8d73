# The orders API (stockroom.order.v1): gRPC, gRPC-Web and Connect on one port,
# from the catalog's image (see catalog.nomad.hcl). Every allocation also runs
# the reservation sweeper, which expires unpaid orders past their TTL; it is
# safe in every replica (it claims orders with SKIP LOCKED and re-checks the
# state under the order's lock), so there is no separate sweeper group.
#
# Order events reach NATS through the outbox: the relay of search.nomad.hcl
# publishes them, so this job needs no NATS_URL.
#
# Secrets live in Nomad Variables, never in this file (the migrate task runs
# as the admin user, the API as the service user; see catalog.nomad.hcl):
#   nomad var put nomad/jobs/orders db_user=stockroom db_password=... \
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
    {{ with nomadVar "nomad/jobs/orders" -}}
    DATABASE_URL=mysql://{{ .db_user }}:{{ .db_password | urlquery }}@vtgate-mysql.service.consul:15306/stockroom?ssl-mode=VERIFY_IDENTITY&ssl-ca=/secrets/db-ca.pem
    {{- end }}
  EOT
  # The migrate task's: the admin user, which may run DDL.
  migrate_database_env = <<-EOT
    {{ with nomadVar "nomad/jobs/orders" -}}
    DATABASE_URL=mysql://{{ .migrate_db_user }}:{{ .migrate_db_password | urlquery }}@vtgate-mysql.service.consul:15306/stockroom?ssl-mode=VERIFY_IDENTITY&ssl-ca=/secrets/db-ca.pem
    {{- end }}
  EOT
}

job "orders" {
  datacenters = var.datacenters
  type        = "service"

  group "api" {
    count = 2

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
      name     = "orders-metrics"
      port     = "metrics"
      provider = "consul"
      tags     = ["prometheus"]
    }

    service {
      name     = "orders"
      port     = "grpc"
      provider = "consul"
      tags     = ["grpc", "connect"]

      # grpc.health.v1 Check on the whole server (""): it turns NOT_SERVING as
      # soon as SIGTERM starts the drain, so Consul stops routing here first.
      check {
        name         = "grpc-health"
        type         = "grpc"
        port         = "grpc"
        grpc_use_tls = false
        interval     = "5s"
        timeout      = "2s"
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
        args    = ["services/orders/src/main.ts"]
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
        ORDER_RESERVATION_TTL_MS    = "900000"
        # Buckets live in each process: this is the per-replica share of a
        # merchant's 500 order calls/s (×count; ×count+1 while a canary runs).
        ORDER_RATE_PER_SEC          = "250"
        ORDER_RATE_BURST            = "500"
        ORDER_SWEEP_EVERY_MS        = "5000"
        ORDER_SWEEP_BATCH           = "100"
        ORDER_WATCH_INTERVAL_MS     = "200"
        OTEL_BSP_MAX_QUEUE_SIZE     = "8192"
        OTEL_EXPORTER_OTLP_ENDPOINT = "http://jaeger-otlp.service.consul:4318"
        OTEL_RESOURCE_ATTRIBUTES    = "service.instance.id=${NOMAD_ALLOC_ID},deployment.environment=production"

        # Per process: order transactions in flight per merchant and in all
        # (the bulkhead), how long a call may wait for its merchant's place
        # (ms), orders waiting for a hot SKU's batch, how long a merchant's
        # orders under way may be expected to queue (ms), orders of one
        # SKU per transaction, and how long a committed sold-out is trusted
        # without a read (ms).
        ORDER_IN_FLIGHT_PER_MERCHANT = "16"
        ORDER_IN_FLIGHT_MAX          = "64"
        ORDER_IN_FLIGHT_WAIT_MS      = "40"
        ORDER_WAITING_PER_SKU        = "1024"
        ORDER_QUEUE_MS               = "1000"
        ORDER_BATCH_MAX              = "32"
        ORDER_SOLD_OUT_TRUST_MS      = "0"
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

      # Consul deregisters first, then SIGTERM; the process ends its WatchOrder
      # streams, lets the sweeper finish the batch it is expiring (each order
      # its own short transaction), reports NOT_SERVING, drains in-flight calls
      # for DRAIN_MS, closes the pool and flushes traces. kill_timeout leaves
      # room for all of it before Nomad sends SIGKILL.
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
