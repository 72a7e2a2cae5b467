"""`service JobsService` of `channels.proto`: the gRPC twin of the HTTP job routes.

Unlike `service ChannelsService` it does not depend on the channels' schemas: the text is
the same in every project, appended by `generator.proto.render_proto` after the payload
messages. `runtime.grpc.jobs` converts `runtime.engine.jobs.JobInfo` and `ChannelCounts` to
these messages; the generated `add_to_server` (templates/grpc_service.py.j2) glues the two.

Every RPC has its own `<Rpc>Request` and `<Rpc>Response` (buf's STANDARD lint rules), so a
method can gain a field without touching another. Times a job went through are
`google.protobuf.Timestamp` (unset: not yet); an error's time is `at_ms`, milliseconds since
the Unix epoch as stored (0: unknown, e.g. a stalled job). A result is a
`google.protobuf.Value` (any JSON value; its numbers are doubles, so an integer above 2^53
loses digits); the payload stays JSON text. `Job`'s field 10 was `string result_json`: it
is reserved, number and name, so the wire never reuses it. These messages are not in the
lock file (it numbers the channels' payloads); their numbers are fixed here.
"""

from __future__ import annotations

__all__ = ["JOBS_IMPORTS", "JOBS_PROTO", "JOBS_SERVICE_NAME", "JOBS_TOP_LEVEL"]

JOBS_SERVICE_NAME = "JobsService"

JOBS_IMPORTS = ("google/protobuf/struct.proto", "google/protobuf/timestamp.proto")

# Every top-level name (messages, enums and enum values) that JOBS_PROTO declares.
JOBS_TOP_LEVEL = frozenset(
    {
        JOBS_SERVICE_NAME,
        "ChannelCounts",
        "DiscardJobRequest",
        "DiscardJobResponse",
        "GetChannelRequest",
        "GetChannelResponse",
        "GetJobRequest",
        "GetJobResponse",
        "Job",
        "JobError",
        "JobState",
        "ListJobsRequest",
        "ListJobsResponse",
        "RetryJobRequest",
        "RetryJobResponse",
        "CancelJobRequest",
        "CancelJobResponse",
        "CancelJobsRequest",
        "CancelJobsResponse",
        "RetryFailedJobsRequest",
        "RetryFailedJobsResponse",
        "DiscardFailedJobsRequest",
        "DiscardFailedJobsResponse",
        "PauseChannelRequest",
        "PauseChannelResponse",
        "ResumeChannelRequest",
        "ResumeChannelResponse",
        "ListProcessesRequest",
        "ListProcessesResponse",
        "Process",
        "WatchEventsRequest",
        "WatchEventsResponse",
        "JobEvent",
        "JOB_STATE_UNSPECIFIED",
        "JOB_STATE_WAITING",
        "JOB_STATE_DELAYED",
        "JOB_STATE_ACTIVE",
        "JOB_STATE_COMPLETED",
        "JOB_STATE_FAILED",
        "JOB_STATE_CANCELLED",
    }
)

JOBS_PROTO = """\
// Inspect channels and their jobs; retry, discard or cancel jobs; pause and resume
// channels; list the live processes. The HTTP twin is /channels/{name}/... (and
// /processes). An unknown channel or job ends a call with NOT_FOUND.
service JobsService {
  // One job: state, attempts, timestamps, result, payload and errors.
  rpc GetJob(GetJobRequest) returns (GetJobResponse);
  // Jobs in one state: failed, completed, cancelled and delayed newest first; waiting in
  // start order (priority, then FIFO); active oldest first.
  rpc ListJobs(ListJobsRequest) returns (ListJobsResponse);
  // Run a failed or cancelled job again, its failures reset; the reply is the job right
  // after (WAITING, or ACTIVE when a worker took it at once). FAILED_PRECONDITION when it
  // is in another state.
  rpc RetryJob(RetryJobRequest) returns (RetryJobResponse);
  // Remove a finished (completed, failed, cancelled) or delayed job. FAILED_PRECONDITION
  // when it is waiting or active (cancel it first).
  rpc DiscardJob(DiscardJobRequest) returns (DiscardJobResponse);
  // Counts per state, paused or not, and the rate limiter's current window.
  rpc GetChannel(GetChannelRequest) returns (GetChannelResponse);
  // Cancel a waiting or delayed job at once, or a running one cooperatively (its handler
  // gets asyncio.CancelledError; the job ends CANCELLED, not retried). FAILED_PRECONDITION
  // naming the state when it has finished.
  rpc CancelJob(CancelJobRequest) returns (CancelJobResponse);
  // Cancel every waiting (or delayed) job of a channel; running ones are not touched.
  rpc CancelJobs(CancelJobsRequest) returns (CancelJobsResponse);
  // Run every failed job of a channel again.
  rpc RetryFailedJobs(RetryFailedJobsRequest) returns (RetryFailedJobsResponse);
  // Remove every failed job of a channel.
  rpc DiscardFailedJobs(DiscardFailedJobsRequest) returns (DiscardFailedJobsResponse);
  // No process starts a job of the channel until it is resumed; running jobs finish and
  // new jobs are accepted. Lasts across restarts.
  rpc PauseChannel(PauseChannelRequest) returns (PauseChannelResponse);
  // Processes start the channel's jobs again.
  rpc ResumeChannel(ResumeChannelRequest) returns (ResumeChannelResponse);
  // The live `runtime serve` processes on this Redis and key prefix (those that
  // heartbeated within the last 15 s), oldest start first: GET /processes.
  rpc ListProcesses(ListProcessesRequest) returns (ListProcessesResponse);
  // The channel's job events as they happen (one job's with job_id), after the event id
  // `after` ("0": from the oldest kept; empty: from now on), in order. A reader behind
  // the channel's cap (keep.events) gets an event of type "gap" saying how many it
  // missed. Ends only when the client cancels it: GET /channels/{name}/events.
  rpc WatchEvents(WatchEventsRequest) returns (stream WatchEventsResponse);
}

enum JobState {
  JOB_STATE_UNSPECIFIED = 0;
  JOB_STATE_WAITING = 1;
  JOB_STATE_DELAYED = 2;
  JOB_STATE_ACTIVE = 3;
  JOB_STATE_COMPLETED = 4;
  JOB_STATE_FAILED = 5;
  JOB_STATE_CANCELLED = 6;
}

message GetJobRequest {
  string channel = 1;
  string job_id = 2;
}

message GetJobResponse {
  Job job = 1;
}

message ListJobsRequest {
  string channel = 1;
  // JOB_STATE_UNSPECIFIED: failed jobs.
  JobState state = 2;
  uint32 offset = 3;
  // 0: 50; at most 500.
  uint32 limit = 4;
}

message ListJobsResponse {
  repeated Job jobs = 1;
}

message RetryJobRequest {
  string channel = 1;
  string job_id = 2;
}

message RetryJobResponse {
  // The job right after the retry.
  Job job = 1;
}

message DiscardJobRequest {
  string channel = 1;
  string job_id = 2;
}

message DiscardJobResponse {
  // Always true: a job that cannot be discarded ends the call with an error.
  bool discarded = 1;
}

message CancelJobRequest {
  string channel = 1;
  string job_id = 2;
}

message CancelJobResponse {
  // True: cancelled now (it was waiting or delayed). False: it runs, and its worker was
  // told to cancel it; the job becomes CANCELLED when the handler has stopped.
  bool cancelled = 1;
  // The state the job was found in.
  JobState state = 2;
}

message CancelJobsRequest {
  string channel = 1;
  // JOB_STATE_WAITING (also when unspecified) or JOB_STATE_DELAYED.
  JobState state = 2;
}

message CancelJobsResponse {
  uint64 count = 1;
}

message RetryFailedJobsRequest {
  string channel = 1;
}

message RetryFailedJobsResponse {
  uint64 count = 1;
}

message DiscardFailedJobsRequest {
  string channel = 1;
}

message DiscardFailedJobsResponse {
  uint64 count = 1;
}

message PauseChannelRequest {
  string channel = 1;
}

message PauseChannelResponse {
  // The channel right after.
  ChannelCounts counts = 1;
}

message ResumeChannelRequest {
  string channel = 1;
}

message ResumeChannelResponse {
  // The channel right after.
  ChannelCounts counts = 1;
}

message WatchEventsRequest {
  string channel = 1;
  // Only this job's events; empty: every event of the channel.
  string job_id = 2;
  // Start after this event id; "0": from the oldest kept; empty: from now on.
  string after = 3;
}

message WatchEventsResponse {
  JobEvent event = 1;
}

// One change of a job (or of the channel), as the script that made it recorded it.
message JobEvent {
  // `<ms>-<seq>`: resume after it with WatchEventsRequest.after. Of a gap: the id the
  // gap starts after.
  string id = 1;
  string channel = 2;
  // waiting, delayed, active, progress, completed, retrying, failed, stalled,
  // cancelled, retried, discarded, paused, resumed; or gap.
  string event = 3;
  // Empty for the channel's own events (paused, resumed) and gaps.
  string job_id = 4;
  google.protobuf.Timestamp at = 5;
  // What the event adds: priority, due_at, attempt, progress, error {type, message},
  // stalled; of a gap: missed (how many; null when unknown), after, resumed_at.
  google.protobuf.Struct data = 6;
}

message ListProcessesRequest {}

message ListProcessesResponse {
  repeated Process processes = 1;
}

// One `runtime serve` process as it last described itself in its heartbeat.
message Process {
  // Host, pid and a random part: unique across restarts.
  string id = 1;
  string host = 2;
  uint32 pid = 3;
  // Channelkit's version in that process.
  string version = 4;
  // The generated package it serves.
  string app = 5;
  google.protobuf.Timestamp started_at = 6;
  google.protobuf.Timestamp heartbeat_at = 7;
  // The channels whose jobs it runs; empty when its workers are off.
  repeated string worker_channels = 8;
  // host:port of its HTTP API; empty when that is off.
  string http = 9;
  // host:port of its gRPC server; empty when that is off.
  string grpc = 10;
  // Jobs running in it at its last heartbeat.
  uint32 running_jobs = 11;
}

message GetChannelRequest {
  string channel = 1;
}

message GetChannelResponse {
  ChannelCounts counts = 1;
}

message Job {
  string id = 1;
  string channel = 2;
  JobState state = 3;
  // Runs started, this one included.
  uint32 attempts = 4;
  // Failed runs since it was enqueued or last retried.
  uint32 failures = 5;
  // Unset: not (yet) reached.
  google.protobuf.Timestamp enqueued_at = 6;
  google.protobuf.Timestamp started_at = 7;
  google.protobuf.Timestamp finished_at = 8;
  // When a delayed job (or a retry waiting for its backoff) is due.
  google.protobuf.Timestamp due_at = 9;
  // Was `string result_json`: the result as JSON text.
  reserved 10;
  reserved "result_json";
  // The payload as JSON text; kept while the job waits, is delayed, failed or cancelled,
  // empty otherwise. A message that was not JSON: its text, as a JSON string.
  string payload_json = 11;
  // The last failure; unset when it never failed.
  JobError error = 12;
  // The last 10 failures, oldest first.
  repeated JobError errors = 13;
  // What the handler returned, any JSON value; unset until it completes (and when it
  // returned None). Numbers are doubles: an integer above 2^53 loses digits.
  google.protobuf.Value result = 14;
  // 1 starts first, 10 last.
  uint32 priority = 15;
  // What the handler last reported (a number or an object); unset: nothing yet.
  google.protobuf.Value progress = 16;
  // Running, and its worker was told to cancel it.
  bool cancel_requested = 17;
}

message JobError {
  // The exception's qualified name, or `payload_invalid`, `message_invalid`, `stalled`.
  string type = 1;
  string message = 2;
  // The end of the formatted traceback.
  string traceback = 3;
  uint32 attempt = 4;
  // When it failed, ms since the Unix epoch; 0 when unknown.
  int64 at_ms = 5;
}

message ChannelCounts {
  message Limiter {
    // Jobs started in the current window.
    uint64 granted_in_window = 1;
    // Until the window ends; 0 when no window is open.
    uint64 window_resets_in_ms = 2;
  }

  string channel = 1;
  uint64 waiting = 2;
  uint64 active = 3;
  uint64 delayed = 4;
  uint64 completed = 5;
  uint64 failed = 6;
  // The channel-wide rate limiter's window (a keyed limiter's groups are not included).
  Limiter limiter = 7;
  uint64 cancelled = 8;
  // No process starts the channel's jobs (PauseChannel).
  bool paused = 9;
  // Time left of a handler's RetryAfter(scope="channel"); 0: none.
  uint64 held_back_ms = 10;
  // Waiting jobs per priority (only priorities with jobs).
  map<uint32, uint64> waiting_by_priority = 11;
}
"""
