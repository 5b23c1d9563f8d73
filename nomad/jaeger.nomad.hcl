# Jaeger v2 all-in-one: OTLP in on 4317 (gRPC) and 4318 (HTTP, what the
# services use), UI and query API on 16686. Traces are kept on a host volume
# with Badger for a week.
#
# Badger is embedded, so this is one instance. When trace volume outgrows one
# host, split it into collectors (count > 1) and a query service over
# OpenSearch/Cassandra, keeping the same service names and ports.
#
#   host_volume "jaeger-data" { path = "/srv/jaeger" }   # Nomad client config
# (owned by uid 10001, the user the Jaeger image runs as).

variable "image" {
  type    = string
  default = "jaegertracing/jaeger:2.10.0"
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

job "jaeger" {
  datacenters = var.datacenters
  type        = "service"

  group "jaeger" {
    count = 1

    volume "data" {
      type      = "host"
      source    = "jaeger-data"
      read_only = false
    }

    network {
      mode = "host"
      port "otlp_grpc" {
        static = 4317
      }
      port "otlp_http" {
        static = 4318
      }
      port "ui" {
        static = 16686
      }
      port "health" {
        static = 13133
      }
    }

    service {
      name     = "jaeger-otlp"
      port     = "otlp_http"
      provider = "consul"
      tags     = ["otlp", "otlp-http"]

      check {
        type     = "http"
        port     = "health"
        path     = "/status"
        interval = "10s"
        timeout  = "2s"
      }
    }

    service {
      name     = "jaeger-otlp-grpc"
      port     = "otlp_grpc"
      provider = "consul"
      tags     = ["otlp", "otlp-grpc"]
    }

    service {
      name     = "jaeger-ui"
      port     = "ui"
      provider = "consul"

      check {
        type     = "http"
        port     = "ui"
        path     = "/"
        interval = "30s"
        timeout  = "2s"
      }
    }

    task "jaeger" {
      driver = "docker"

      config {
        image        = var.image
        network_mode = "host"
        args         = ["--config", "/local/jaeger.yaml"]
      }

      volume_mount {
        volume      = "data"
        destination = "/badger"
      }

      template {
        destination = "local/jaeger.yaml"
        change_mode = "restart"
        data        = <<-EOT
          service:
            extensions: [jaeger_storage, jaeger_query, healthcheckv2]
            pipelines:
              traces:
                receivers: [otlp]
                processors: [batch]
                exporters: [jaeger_storage_exporter]

          extensions:
            healthcheckv2:
              use_v2: true
              http:
                endpoint: 0.0.0.0:13133
            jaeger_query:
              storage:
                traces: badger_store
              http:
                endpoint: 0.0.0.0:16686
            jaeger_storage:
              backends:
                badger_store:
                  badger:
                    directories:
                      keys: /badger/keys
                      values: /badger/values
                    ephemeral: false
                    ttl:
                      spans: 168h

          receivers:
            otlp:
              protocols:
                grpc:
                  endpoint: 0.0.0.0:4317
                http:
                  endpoint: 0.0.0.0:4318

          processors:
            batch:

          exporters:
            jaeger_storage_exporter:
              trace_storage: badger_store
        EOT
      }

      kill_timeout = "30s"

      resources {
        cpu    = 1000
        memory = 2048
      }
    }
  }
}
