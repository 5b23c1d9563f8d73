# The webhook dispatcher (services/notify/src/dispatcher-main.ts),
# from the catalog's image (see catalog.nomad.hcl). Merchants register their
# endpoints through the catalog API (NotificationService); this job sends them
# the events.
#
# Every allocation is the same: all share one durable consumer (WEBHOOK_CONSUMER)
# of the event stream, which records each event as webhook_deliveries rows,
# and each claims due deliveries with SELECT … FOR UPDATE SKIP LOCKED, so two
# allocations never send the same row and one that dies leaves its claims to
# the other when their lease ends. More allocations add sending capacity;
# WEBHOOK_CONCURRENCY and WEBHOOK_ENDPOINT_CONCURRENCY are per allocation.
#
# Its tables are in the notify migration set, which tools/migrate.ts applies
# with the others: the catalog job's prestart task creates them, so deploy
# catalog first. The dispatcher calls merchants'
# URLs on the internet: its nodes need egress to the public internet (and
# nothing here opens private targets: WEBHOOK_ALLOW_PRIVATE_TARGETS stays
# false, as in the catalog API).
#
# Secrets live in Nomad Variables, never in this file (the service user; no
# migrate task, so no admin user):
#   nomad var put nomad/jobs/webhooks db_user=stockroom db_password=... nats_password=...
# Connections are TLS: to vtgate (ssl-mode=VERIFY_IDENTITY) and to NATS
# (tls://, user "webhooks"); the CAs come from the shared variable nomad/jobs
# (db_ca, nats_ca), see nomad/README.md.

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
    NATS_USER=webhooks
    {{ with nomadVar "nomad/jobs/webhooks" -}}
    NATS_PASSWORD={{ .nats_password }}
    {{- end }}
    NATS_TLS_CA=/secrets/nats-ca.pem
  EOT
  nats_ca = <<-EOT
    {{ with nomadVar "nomad/jobs" }}{{ .nats_ca }}{{ end }}
  EOT
  database_env = <<-EOT
    {{ with nomadVar "nomad/jobs/webhooks" -}}
    DATABASE_URL=mysql://{{ .db_user }}:{{ .db_password | urlquery }}@vtgate-mysql.service.consul:15306/stockroom?ssl-mode=VERIFY_IDENTITY&ssl-ca=/secrets/db-ca.pem
    {{- end }}
  EOT
  # Client routing for the 3-node JetStream cluster of nats.nomad.hcl, over TLS.
  nats_url = "tls://nats.service.consul:4222"
}

job "webhooks" {
  datacenters = var.datacenters
  type        = "service"

  group "dispatcher" {
    count = 2

    network {
      port "metrics" {
        to = 9464
      }
    }

    # Prometheus finds every instance through Consul (tag "prometheus"):
    # /metrics on the metrics port, see tools/observability/.
    service {
      name     = "webhooks-metrics"
      port     = "metrics"
      provider = "consul"
      tags     = ["prometheus"]

      # The dispatcher has no gRPC port: /readyz answers 503 while MySQL or NATS is unreachable.
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
      max_parallel     = 1
      auto_revert      = true
      min_healthy_time = "10s"
      healthy_deadline = "3m"
    }

    spread {
      attribute = "${node.unique.id}"
    }

    task "dispatcher" {
      driver = "docker"

      config {
        image   = var.image
        command = "node"
        args    = ["services/notify/src/dispatcher-main.ts"]
        ports   = ["metrics"]
      }

      env {
        # Recording events (WEBHOOK_INTAKE_CONCURRENCY at once) and settling
        # sends each take a connection briefly; requests go out after the commit.
        DB_POOL_SIZE                 = "20"
        NATS_URL                     = local.nats_url
        LOG_LEVEL                    = "info"
        # The dispatcher creates the stream if it is missing: same settings as the relay's.
        EVENTS_REPLICAS              = "3"
        WEBHOOK_CONSUMER             = "webhooks"
        WEBHOOK_INTAKE_CONCURRENCY   = "16"
        WEBHOOK_MAX_ACK_PENDING      = "1024"
        WEBHOOK_ACK_WAIT_MS          = "30000"
        WEBHOOK_CONCURRENCY          = "64"
        WEBHOOK_ENDPOINT_CONCURRENCY = "4"
        WEBHOOK_TIMEOUT_MS           = "10000"
        # The catalog API gives a replayed dead letter its own budget of
        # WEBHOOK_MAX_AGE_MS: keep the two jobs' values equal (24 h, the default).
        WEBHOOK_MAX_AGE_MS           = "86400000"
        WEBHOOK_SWEEP_EVERY_MS       = "300000"
        WEBHOOK_RETENTION_MS         = "604800000"
        HOST                         = "0.0.0.0"
        METRICS_PORT                 = "9464"
        HEALTH_PROBE_MS              = "1000"
        OTEL_BSP_MAX_QUEUE_SIZE      = "8192"
        OTEL_EXPORTER_OTLP_ENDPOINT  = "http://jaeger-otlp.service.consul:4318"
        OTEL_RESOURCE_ATTRIBUTES     = "service.instance.id=${NOMAD_ALLOC_ID},deployment.environment=production"
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

      # SIGTERM: /readyz turns 503, the intake stops taking events (unacked ones
      # go to the other allocation) and the requests in flight finish, each
      # within WEBHOOK_TIMEOUT_MS. One cut off by SIGKILL is not lost: its claim
      # lapses and it is sent again (delivery is at least once).
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu        = 500
        memory     = 256
        memory_max = 512
      }
    }
  }
}
