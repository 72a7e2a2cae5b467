"""`service SchedulesService` of `channels.proto`: the gRPC twin of the HTTP schedule
routes (`/channels/{name}/schedules`), the same text in every project, appended by
`generator.proto.render_proto` after `service JobsService`.

`runtime.grpc.schedules` serves it with the generated package's messages. A schedule's
payload is JSON text (`payload_json`, as `Job.payload_json`), validated with the
channel's payload model; times are `google.protobuf.Timestamp`s (unset: none). These
messages are not in the lock file (it numbers the channels' payloads); their numbers are
fixed here.
"""

from __future__ import annotations

__all__ = ["SCHEDULES_PROTO", "SCHEDULES_SERVICE_NAME", "SCHEDULES_TOP_LEVEL"]

SCHEDULES_SERVICE_NAME = "SchedulesService"

# Every top-level name (messages, enums and enum values) that SCHEDULES_PROTO declares.
SCHEDULES_TOP_LEVEL = frozenset(
    {
        SCHEDULES_SERVICE_NAME,
        "CatchUp",
        "CATCH_UP_UNSPECIFIED",
        "CATCH_UP_ONCE",
        "CATCH_UP_SKIP",
        "Schedule",
        "UpsertScheduleRequest",
        "UpsertScheduleResponse",
        "GetScheduleRequest",
        "GetScheduleResponse",
        "ListSchedulesRequest",
        "ListSchedulesResponse",
        "PauseScheduleRequest",
        "PauseScheduleResponse",
        "ResumeScheduleRequest",
        "ResumeScheduleResponse",
        "RemoveScheduleRequest",
        "RemoveScheduleResponse",
    }
)

SCHEDULES_PROTO = """\
// Create, list, pause, resume and remove a channel's schedules (jobs enqueued on a cron
// expression or a fixed interval). The HTTP twin is /channels/{name}/schedules. An
// unknown channel or schedule ends a call with NOT_FOUND; a bad cron, time zone,
// interval or payload with INVALID_ARGUMENT naming the field; changing or removing a
// schedule that channels.yaml declares with FAILED_PRECONDITION.
service SchedulesService {
  // Create a schedule, or change the one of that name (BullMQ's upsertJobScheduler). The
  // same definition again changes nothing; a new one starts from now.
  rpc UpsertSchedule(UpsertScheduleRequest) returns (UpsertScheduleResponse);
  // One schedule: definition, state, next and last run.
  rpc GetSchedule(GetScheduleRequest) returns (GetScheduleResponse);
  // Every schedule of a channel, by name.
  rpc ListSchedules(ListSchedulesRequest) returns (ListSchedulesResponse);
  // Enqueue nothing until resumed (cluster-wide; survives restarts).
  rpc PauseSchedule(PauseScheduleRequest) returns (PauseScheduleResponse);
  // Go on from now: ticks that fell while paused are not enqueued.
  rpc ResumeSchedule(ResumeScheduleRequest) returns (ResumeScheduleResponse);
  // Remove a schedule; the jobs it enqueued stay.
  rpc RemoveSchedule(RemoveScheduleRequest) returns (RemoveScheduleResponse);
}

// Ticks missed while no process ran.
enum CatchUp {
  // ONCE.
  CATCH_UP_UNSPECIFIED = 0;
  // One job, for the latest missed tick.
  CATCH_UP_ONCE = 1;
  // No job; the next is the next future tick.
  CATCH_UP_SKIP = 2;
}

message UpsertScheduleRequest {
  string channel = 1;
  string name = 2;
  // Exactly one.
  oneof cadence {
    // 5 fields, or 6 with seconds first.
    string cron = 3;
    // A fixed interval, at least 1000.
    uint64 every_ms = 4;
  }
  // An IANA time zone; empty: UTC.
  string timezone = 5;
  // The payload as JSON text, validated with the channel's payload schema.
  string payload_json = 6;
  // No tick before; unset: none.
  google.protobuf.Timestamp start = 7;
  // No tick after; unset: none.
  google.protobuf.Timestamp end = 8;
  CatchUp catch_up = 9;
  // Store it paused.
  bool paused = 10;
}

message UpsertScheduleResponse {
  Schedule schedule = 1;
}

message GetScheduleRequest {
  string channel = 1;
  string name = 2;
}

message GetScheduleResponse {
  Schedule schedule = 1;
}

message ListSchedulesRequest {
  string channel = 1;
}

message ListSchedulesResponse {
  repeated Schedule schedules = 1;
}

message PauseScheduleRequest {
  string channel = 1;
  string name = 2;
}

message PauseScheduleResponse {
  Schedule schedule = 1;
}

message ResumeScheduleRequest {
  string channel = 1;
  string name = 2;
}

message ResumeScheduleResponse {
  Schedule schedule = 1;
}

message RemoveScheduleRequest {
  string channel = 1;
  string name = 2;
}

message RemoveScheduleResponse {
  // Always true: a schedule that cannot be removed ends the call with an error.
  bool removed = 1;
}

message Schedule {
  string name = 1;
  string channel = 2;
  oneof cadence {
    string cron = 3;
    uint64 every_ms = 4;
  }
  string timezone = 5;
  string payload_json = 6;
  google.protobuf.Timestamp start = 7;
  google.protobuf.Timestamp end = 8;
  CatchUp catch_up = 9;
  // Paused now (by channels.yaml or at runtime).
  bool paused = 10;
  // `config` (channels.yaml) or `api`.
  string source = 11;
  // Unset while paused, or when no tick is left before `end`.
  google.protobuf.Timestamp next_run = 12;
  // The last tick that enqueued a job; unset: none yet.
  google.protobuf.Timestamp last_run = 13;
  string last_job_id = 14;
  // Jobs the schedule created.
  uint64 enqueued = 15;
  // Why the last tick's job could not be built; empty: no error.
  string error = 16;
}
"""
