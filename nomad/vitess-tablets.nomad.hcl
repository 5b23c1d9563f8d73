# The stateful half of Vitess: a mysqld and its vttablet for each replica of
# each shard, and vtorc, which repairs replication and elects a new primary
# when one fails. vtgate and vtctld are in vitess.nomad.hcl; this job uses the
# same image, cell and topology (Consul, 127.0.0.1:8500, hence host networking).
#
# One group per shard of local.shards: keyspace stockroom in 2 shards and
# stockroom_search in 1, the shards tools/vitess/vttestserver.sh starts
# (deploy-config.test.ts checks they agree). Each group runs 3 tablets (a
# primary and two semi-sync replicas; every tablet starts as a replica and vtorc
# elects the primary) on distinct hosts.
#
# Each Nomad client that may run tablets declares the data volume and a tablet
# uid base of its own in its config, a multiple of 10 unique in the cell:
#   host_volume "vitess-data" { path = "/srv/vitess" }
#   meta { vitess_tablet_uid_base = "100" }     # the next host 110, then 120, …
# A tablet's uid is that base + its shard's slot (stockroom/-80: 1, 80-: 2,
# stockroom_search/0: 3), e.g. zone1-101. Not NOMAD_ALLOC_INDEX: a replacement
# allocation may keep an index and land on another host, and a uid must stay
# with its data (/vt/vtdataroot/vt_<uid, 10 digits> on the host volume, which
# both tasks mount: vttablet finds mysqld's my.cnf and socket there). A host
# runs at most one tablet of a shard (distinct_hosts), so base + slot is unique.
#
# Once, before the first run (the keyspaces' durability policy is what vtorc
# and the tablets follow for semi-sync):
#   vtctldclient --server vtctld.service.consul:15999 CreateKeyspace --durability-policy semi_sync stockroom
#   vtctldclient --server vtctld.service.consul:15999 CreateKeyspace --durability-policy semi_sync stockroom_search
# and the credentials (never in this file), rendered into each task's secrets/:
#   nomad var put nomad/jobs/vitess-tablets init_db_sql=@init_db.sql db_credentials=@db-credentials.json
# init_db.sql is Vitess's config/init_db.sql with passwords for its users
# (vt_dba, vt_app, vt_repl, …); db-credentials.json gives vttablet the same
# passwords ({"vt_app": ["…"], "vt_dba": ["…"], …}).
#
# Rolling a group restarts one tablet at a time; restart the primary's last,
# after moving the primary away (vtctldclient PlannedReparentShard), so writes
# pause for a planned reparent rather than wait for vtorc to notice a dead one.
# Not here yet: backups (--backup-storage-implementation and
# --restore-from-backup), without which a tablet on a new host starts empty and
# must be seeded by hand; TLS between vtgate and the tablets' gRPC.

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

  # One group per shard. slot makes the tablet uid (uid base + slot) and the
  # ports (15100 + slot web, 16100 + slot gRPC, 17100 + slot MySQL), so a host
  # may run one tablet of each shard.
  shards = [
    { keyspace = "stockroom", shard = "-80", slot = 1 },
    { keyspace = "stockroom", shard = "80-", slot = 2 },
    { keyspace = "stockroom_search", shard = "0", slot = 3 },
  ]
}

job "vitess-tablets" {
  datacenters = var.datacenters
  type        = "service"

  dynamic "group" {
    for_each = local.shards
    labels   = ["${group.value.keyspace}-${group.value.shard}"]

    content {
      count = 3

      constraint {
        operator = "distinct_hosts"
        value    = "true"
      }

      constraint {
        attribute = "${meta.vitess_tablet_uid_base}"
        operator  = "is_set"
      }

      # One tablet at a time, and only once the restarted one serves again
      # (caught up with its primary).
      update {
        max_parallel     = 1
        health_check     = "checks"
        min_healthy_time = "30s"
        healthy_deadline = "10m"
        auto_revert      = true
      }

      volume "data" {
        type      = "host"
        source    = "vitess-data"
        read_only = false
      }

      network {
        mode = "host"
        port "web" {
          static = 15100 + group.value.slot
        }
        port "grpc" {
          static = 16100 + group.value.slot
        }
        port "mysql" {
          static = 17100 + group.value.slot
        }
      }

      service {
        name     = "vttablet"
        port     = "grpc"
        provider = "consul"
        tags     = ["${group.value.keyspace}", "shard-${group.value.shard}"]

        # Serving, and a replica not lagging too far behind.
        check {
          name     = "vttablet-health"
          type     = "http"
          port     = "web"
          path     = "/debug/health"
          interval = "5s"
          timeout  = "2s"
        }

        check {
          name     = "mysqld"
          type     = "tcp"
          port     = "mysql"
          interval = "10s"
          timeout  = "2s"
        }
      }

      # mysqld, owned by mysqlctld: it initializes the data directory the first
      # time (init_db.sql), then starts the existing one.
      task "mysqlctld" {
        driver = "docker"

        lifecycle {
          hook    = "prestart"
          sidecar = true
        }

        config {
          image        = var.image
          network_mode = "host"
          command      = "mysqlctld"
          args = [
            "--tablet-uid", "${TABLET_UID}",
            "--mysql-port", "${NOMAD_PORT_mysql}",
            "--socket-file", "/vt/vtdataroot/mysqlctl-${TABLET_UID}.sock",
            "--init-db-sql-file", "/secrets/init_db.sql",
            "--wait-time", "5m",
          ]
        }

        volume_mount {
          volume      = "data"
          destination = "/vt/vtdataroot"
        }

        template {
          data        = <<-EOT
            TABLET_UID={{ env "meta.vitess_tablet_uid_base" | parseInt | add ${group.value.slot} }}
          EOT
          destination = "local/tablet.env"
          env         = true
        }

        template {
          data        = <<-EOT
            {{ with nomadVar "nomad/jobs/vitess-tablets" }}{{ .init_db_sql }}{{ end }}
          EOT
          destination = "secrets/init_db.sql"
          perms       = "0600"
          change_mode = "noop"
        }

        # mysqld flushes and stops cleanly within this.
        kill_timeout = "120s"

        resources {
          cpu    = 2000
          memory = 4096
        }
      }

      task "vttablet" {
        driver = "docker"

        config {
          image        = var.image
          network_mode = "host"
          command      = "vttablet"
          args = concat(local.topo_flags, [
            "--tablet-path", "${var.cell}-${TABLET_UID}",
            "--tablet-hostname", "${attr.unique.network.ip-address}",
            "--init-keyspace", group.value.keyspace,
            "--init-shard", group.value.shard,
            "--init-tablet-type", "replica",
            "--port", "${NOMAD_PORT_web}",
            "--grpc-port", "${NOMAD_PORT_grpc}",
            "--service-map", "grpc-queryservice,grpc-tabletmanager,grpc-updatestream",
            "--mysqlctl-socket", "/vt/vtdataroot/mysqlctl-${TABLET_UID}.sock",
            "--db-charset", "utf8mb4",
            "--db-credentials-server", "file",
            "--db-credentials-file", "/secrets/db-credentials.json",
            "--health-check-interval", "5s",
          ])
        }

        volume_mount {
          volume      = "data"
          destination = "/vt/vtdataroot"
        }

        template {
          data        = <<-EOT
            TABLET_UID={{ env "meta.vitess_tablet_uid_base" | parseInt | add ${group.value.slot} }}
          EOT
          destination = "local/tablet.env"
          env         = true
        }

        template {
          data        = <<-EOT
            {{ with nomadVar "nomad/jobs/vitess-tablets" }}{{ .db_credentials }}{{ end }}
          EOT
          destination = "secrets/db-credentials.json"
          perms       = "0600"
          change_mode = "restart"
        }

        # Lets queries in flight finish and, on a primary, the transactions.
        kill_timeout = "60s"

        resources {
          cpu    = 1000
          memory = 1024
        }
      }
    }
  }

  # vtorc watches every shard: it fixes replication, sets semi-sync as the
  # keyspace's durability policy says, and promotes a replica when the primary
  # fails. Two, on distinct hosts; they coordinate through the topology.
  group "vtorc" {
    count = 2

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      mode = "host"
      port "web" {
        static = 16000
      }
    }

    service {
      name     = "vtorc"
      port     = "web"
      provider = "consul"

      check {
        type     = "http"
        port     = "web"
        path     = "/debug/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "vtorc" {
      driver = "docker"

      config {
        image        = var.image
        network_mode = "host"
        command      = "vtorc"
        args = concat(local.topo_flags, [
          "--port", "16000",
          "--instance-poll-time", "1s",
        ])
      }

      resources {
        cpu    = 250
        memory = 256
      }
    }
  }
}
