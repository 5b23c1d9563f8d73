# Search (stockroom.search.v1) and the outbox relay that feeds it, from the
# catalog's image (see catalog.nomad.hcl).
#
# relay: publishes committed outbox rows of the stockroom keyspace to the
# STOCKROOM_EVENTS stream. Two allocations: one leads (a MySQL named lock),
# the other takes over within a second when the leader's session ends. Until
# VStream replaces it, the relay reads the outbox through vtgate.
#
# api: SearchService plus the projector that applies catalog events to the
# search keyspace (stockroom_search, nomad/vitess/search-vschema.json, its
# own database). Any number of allocations share the projector's durable
# consumer; reindexes read products from the stockroom keyspace.
#
# Secrets live in Nomad Variables, never in this file:
#   nomad var put nomad/jobs/search db_user=stockroom db_password=... \
#     migrate_db_user=stockroom_admin migrate_db_password=... nats_password=...
# Connections are TLS: to vtgate (ssl-mode=VERIFY_IDENTITY) and to NATS
# (tls://, user "search", the relay's and the projector's); the CAs come from
# the shared variable nomad/jobs (db_ca, nats_ca), see nomad/README.md.

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
  # NATS: the job's own user (declared in nats.nomad.hcl's authorization), its password from
  # this job's variable, and the CA that signed the NATS servers' certificates (nomad/jobs, key nats_ca).
  nats_env = <<-EOT
    NATS_USER=search
    {{ with nomadVar "nomad/jobs/search" -}}
    NATS_PASSWORD={{ .nats_password }}
    {{- end }}
    NATS_TLS_CA=/secrets/nats-ca.pem
  EOT
  nats_ca = <<-EOT
    {{ with nomadVar "nomad/jobs" }}{{ .nats_ca }}{{ end }}
  EOT
  relay_database_env = <<-EOT
    {{ with nomadVar "nomad/jobs/search" -}}
    DATABASE_URL=mysql://{{ .db_user }}:{{ .db_password | urlquery }}@vtgate-mysql.service.consul:15306/stockroom?ssl-mode=VERIFY_IDENTITY&ssl-ca=/secrets/db-ca.pem
    {{- end }}
  EOT
  # API keys and products in stockroom; the projection in stockroom_search.
  search_database_env = <<-EOT
    {{ with nomadVar "nomad/jobs/search" -}}
    DATABASE_URL=mysql://{{ .db_user }}:{{ .db_password | urlquery }}@vtgate-mysql.service.consul:15306/stockroom?ssl-mode=VERIFY_IDENTITY&ssl-ca=/secrets/db-ca.pem
    SEARCH_DATABASE_URL=mysql://{{ .db_user }}:{{ .db_password | urlquery }}@vtgate-mysql.service.consul:15306/stockroom_search?ssl-mode=VERIFY_IDENTITY&ssl-ca=/secrets/db-ca.pem
    {{- end }}
  EOT
  # The migrate task's: the admin user, which may run DDL, on the search keyspace only.
  migrate_database_env = <<-EOT
    {{ with nomadVar "nomad/jobs/search" -}}
    SEARCH_DATABASE_URL=mysql://{{ .migrate_db_user }}:{{ .migrate_db_password | urlquery }}@vtgate-mysql.service.consul:15306/stockroom_search?ssl-mode=VERIFY_IDENTITY&ssl-ca=/secrets/db-ca.pem
    {{- end }}
  EOT
  nats_url = "tls://nats.service.consul:4222"
}

job "search" {
  datacenters = var.datacenters
  type        = "service"

  group "relay" {
    count = 2

    spread {
      attribute = "${node.unique.id}"
    }

    update {
      max_parallel     = 1
      health_check     = "checks"
      auto_revert      = true
      min_healthy_time = "10s"
      healthy_deadline = "3m"
    }

    network {
      port "metrics" {
        to = 9464
      }
    }

    # Prometheus finds both relays through Consul (tag "prometheus"): the leader's
    # stockroom_outbox_relay_* series, see tools/observability/. The relay has no
    # gRPC port: /readyz answers 503 while MySQL or NATS is unreachable (the
    # standby is ready too: it is waiting for the lock, not broken).
    service {
      name     = "relay-metrics"
      port     = "metrics"
      provider = "consul"
      tags     = ["prometheus"]

      check {
        name     = "ready"
        type     = "http"
        port     = "metrics"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    task "relay" {
      driver = "docker"

      config {
        image   = var.image
        command = "node"
        args    = ["services/events/src/relay-main.ts"]
        ports   = ["metrics"]
      }

      env {
        NATS_URL                    = local.nats_url
        LOG_LEVEL                   = "info"
        # Events are kept 7 days on the 3-node JetStream cluster.
        EVENTS_REPLICAS             = "3"
        RELAY_BATCH_SIZE            = "500"
        RELAY_POLL_MS               = "20"
        RELAY_RETENTION_MS          = "86400000"
        HOST                        = "0.0.0.0"
        METRICS_PORT                = "9464"
        HEALTH_PROBE_MS             = "1000"
        OTEL_EXPORTER_OTLP_ENDPOINT = "http://jaeger-otlp.service.consul:4318"
        OTEL_RESOURCE_ATTRIBUTES    = "service.instance.id=${NOMAD_ALLOC_ID},deployment.environment=production"
      }

      template {
        data        = local.relay_database_env
        destination = "secrets/database.env"
        env         = true
        change_mode = "restart"
        splay       = "30s"
      }

      template {
        data        = local.db_ca
        destination = "secrets/db-ca.pem"
        change_mode = "restart"
      }

      template {
        data        = local.nats_env
        destination = "secrets/nats.env"
        env         = true
        change_mode = "restart"
        splay       = "30s"
      }

      template {
        data        = local.nats_ca
        destination = "secrets/nats-ca.pem"
        change_mode = "restart"
      }

      # SIGTERM: the round in flight finishes and the lock is released, so the
      # standby takes over at once.
      kill_signal  = "SIGTERM"
      kill_timeout = "20s"

      resources {
        cpu        = 500
        memory     = 256
        memory_max = 512
      }
    }
  }

  group "api" {
    count = 2

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

    # Prometheus finds every instance through Consul (tag "prometheus").
    service {
      name     = "search-metrics"
      port     = "metrics"
      provider = "consul"
      tags     = ["prometheus"]
    }

    service {
      name     = "search"
      port     = "grpc"
      provider = "consul"
      tags     = ["grpc", "connect"]

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

    task "migrate" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      config {
        image   = var.image
        command = "node"
        args    = ["tools/migrate.ts", "--search"]
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

    task "search" {
      driver = "docker"

      config {
        image   = var.image
        command = "node"
        args    = ["services/search/src/main.ts"]
        ports   = ["grpc", "metrics"]
      }

      env {
        HOST                         = "0.0.0.0"
        PORT                         = "8080"
        DB_POOL_SIZE                 = "10"
        SEARCH_DB_POOL_SIZE          = "20"
        NATS_URL                     = local.nats_url
        LOG_LEVEL                    = "info"
        DRAIN_MS                     = "20000"
        AUTH_CACHE_MS                = "10000"
        MIGRATE_ON_START             = "false"
        METRICS_PORT                 = "9464"
        EVENTS_REPLICAS              = "3"
        SEARCH_PROJECTOR_CONCURRENCY = "8"
        OTEL_EXPORTER_OTLP_ENDPOINT  = "http://jaeger-otlp.service.consul:4318"
        OTEL_RESOURCE_ATTRIBUTES     = "service.instance.id=${NOMAD_ALLOC_ID},deployment.environment=production"
      }

      template {
        data        = local.search_database_env
        destination = "secrets/database.env"
        env         = true
        change_mode = "restart"
        splay       = "30s"
      }

      template {
        data        = local.db_ca
        destination = "secrets/db-ca.pem"
        change_mode = "restart"
      }

      template {
        data        = local.nats_env
        destination = "secrets/nats.env"
        env         = true
        change_mode = "restart"
        splay       = "30s"
      }

      template {
        data        = local.nats_ca
        destination = "secrets/nats-ca.pem"
        change_mode = "restart"
      }

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
