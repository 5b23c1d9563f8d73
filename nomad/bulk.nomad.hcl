# Bulk jobs (stockroom.bulk.v1): the bulk API takes uploads, validates and
# stages them and queues their chunks on JetStream; the workers apply the
# chunks. Same image as the catalog (see catalog.nomad.hcl), other commands.
#
# The workers are the part to scale: any number share one durable pull
# consumer (BULK_DURABLE) whose max_ack_pending bounds the work in flight, so
# adding allocations adds throughput until MySQL is the limit. They hold no
# state: a killed worker's unacknowledged chunks are redelivered, and the
# chunk ledger in MySQL makes each chunk apply exactly once.
#
# Secrets live in Nomad Variables, never in this file (the migrate task runs
# as the admin user, the API and workers as the service user; see catalog.nomad.hcl):
#   nomad var put nomad/jobs/bulk db_user=stockroom db_password=... \
#     migrate_db_user=stockroom_admin migrate_db_password=... nats_password=...
# Connections are TLS: to vtgate (ssl-mode=VERIFY_IDENTITY) and to NATS
# (tls://, user "bulk"); the CAs come from the shared variable nomad/jobs
# (db_ca, nats_ca), see nomad/README.md.

variable "image" {
  type        = string
  description = "Release image, e.g. registry.example.com/stockroom:<git sha>"
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "workers" {
  type        = number
  default     = 4
  description = "Bulk worker allocations; each applies BULK_WORKER_CONCURRENCY chunks at once."
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
    NATS_USER=bulk
    {{ with nomadVar "nomad/jobs/bulk" -}}
    NATS_PASSWORD={{ .nats_password }}
    {{- end }}
    NATS_TLS_CA=/secrets/nats-ca.pem
  EOT
  nats_ca = <<-EOT
    {{ with nomadVar "nomad/jobs" }}{{ .nats_ca }}{{ end }}
  EOT
  database_env = <<-EOT
    {{ with nomadVar "nomad/jobs/bulk" -}}
    DATABASE_URL=mysql://{{ .db_user }}:{{ .db_password | urlquery }}@vtgate-mysql.service.consul:15306/stockroom?ssl-mode=VERIFY_IDENTITY&ssl-ca=/secrets/db-ca.pem
    {{- end }}
  EOT
  migrate_database_env = <<-EOT
    {{ with nomadVar "nomad/jobs/bulk" -}}
    DATABASE_URL=mysql://{{ .migrate_db_user }}:{{ .migrate_db_password | urlquery }}@vtgate-mysql.service.consul:15306/stockroom?ssl-mode=VERIFY_IDENTITY&ssl-ca=/secrets/db-ca.pem
    {{- end }}
  EOT
  # Client routing for the 3-node JetStream cluster of nats.nomad.hcl, over TLS.
  nats_url = "tls://nats.service.consul:4222"
}

job "bulk" {
  datacenters = var.datacenters
  type        = "service"

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

    # Prometheus finds every instance through Consul (tag "prometheus"):
    # /metrics on the metrics port, see tools/observability/.
    service {
      name     = "bulk-metrics"
      port     = "metrics"
      provider = "consul"
      tags     = ["prometheus"]
    }

    service {
      name     = "bulk"
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
        # A 500,000-row upload allocates fast; without a cap V8 lets its heap
        # grow lazily past 450 MB. With it the process stays under 300 MB;
        # the growing factor of 2 keeps V8 from collecting the whole heap
        # every few hundred ms (README, Memory).
        args  = ["--max-old-space-size=256", "--max-semi-space-size=8", "--heap-growing-percent=100", "services/bulk/src/main.ts"]
        ports = ["grpc", "metrics"]
      }

      env {
        HOST                        = "0.0.0.0"
        PORT                        = "8080"
        DB_POOL_SIZE                = "20"
        NATS_URL                    = local.nats_url
        LOG_LEVEL                   = "info"
        # An upload can take minutes: drain long enough for the ones in flight.
        DRAIN_MS                    = "120000"
        AUTH_CACHE_MS               = "10000"
        MIGRATE_ON_START            = "false"
        BULK_MAX_ITEMS              = "500000"
        BULK_CHUNK_SIZE             = "2000"
        BULK_JOB_WINDOW             = "4"
        # The worker-count alert compares running workers with this. The API exports it (and the
        # chunk consumer's lag), not the workers: it must still be known when every worker is gone.
        BULK_WORKERS_DESIRED        = "${var.workers}"
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
      kill_timeout   = "150s"

      resources {
        cpu        = 1000
        memory     = 384
        memory_max = 768
      }
    }
  }

  group "workers" {
    count = var.workers

    network {
      port "metrics" {
        to = 9464
      }
    }

    # Prometheus finds every instance through Consul (tag "prometheus"):
    # /metrics on the metrics port, see tools/observability/.
    service {
      name     = "bulk-worker-metrics"
      port     = "metrics"
      provider = "consul"
      tags     = ["prometheus"]

      # Workers have no gRPC port: /readyz answers 503 while MySQL or NATS is unreachable.
      check {
        name     = "ready"
        type     = "http"
        port     = "metrics"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
      }
    }

    update {
      max_parallel     = 2
      auto_revert      = true
      min_healthy_time = "10s"
      healthy_deadline = "3m"
    }

    spread {
      attribute = "${node.unique.id}"
    }

    task "worker" {
      driver = "docker"

      config {
        image   = var.image
        command = "node"
        args    = ["services/bulk/src/worker-main.ts"]
        ports   = ["metrics"]
      }

      env {
        DB_POOL_SIZE                = "8"
        NATS_URL                    = local.nats_url
        LOG_LEVEL                   = "info"
        BULK_WORKER_CONCURRENCY     = "2"
        # Workers of one node share its cores: at most BULK_WORKER_SLOTS_PER_HOST (default the CPUs
        # the container sees) apply at once, the rest stand by (services/bulk/src/host-slots.ts).
        # Counted per node, not per container hostname.
        BULK_WORKER_HOST            = "${node.unique.id}"
        BULK_MAX_ACK_PENDING        = "64"
        BULK_ACK_WAIT_MS            = "60000"
        BULK_MAX_DELIVER            = "5"
        BULK_RECONCILE_EVERY_MS     = "5000"
        BULK_RECONCILE_AFTER_MS     = "30000"
        HOST                        = "0.0.0.0"
        METRICS_PORT                = "9464"
        HEALTH_PROBE_MS             = "1000"
        OTEL_BSP_MAX_QUEUE_SIZE     = "8192"
        OTEL_EXPORTER_OTLP_ENDPOINT = "http://jaeger-otlp.service.consul:4318"
        OTEL_RESOURCE_ATTRIBUTES    = "service.instance.id=${NOMAD_ALLOC_ID},deployment.environment=production"
      }

      template {
        data        = local.database_env
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

      # A chunk in flight finishes or is redelivered: SIGTERM stops pulling and
      # waits for the chunks being applied (each one transaction of seconds).
      kill_signal  = "SIGTERM"
      kill_timeout = "60s"

      # The worker nices its own threads (BULK_WORKER_NICE, 10), which orders it only against
      # processes of its own cgroup; between tasks on one client, cpu below is the weight.
      # Memory: a worker's heap grows to some 450 MB over a 500k-row job (bench:bulk); a heap cap
      # would hold it near 210 MB for 20-35% more CPU, so the reservation covers it (README, Memory).
      resources {
        cpu        = 1000
        memory     = 512
        memory_max = 1024
      }
    }
  }
}
