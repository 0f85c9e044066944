/**
 * Two agents as `POST /heartbeat` bodies, used wherever a test needs a small
 * mesh: `time-svc` provides `time_service`; `report-svc` depends on it and on
 * `weather_service`, which nobody provides (so 1 of 2 dependencies resolves).
 * Callers add `version`, `runtime` and the like.
 */
export const timeSvc = {
  agent_id: 'time-svc-1a2b3c4d',
  name: 'time-svc',
  http_host: '127.0.0.1',
  http_port: 9101,
  tools: [{ function_name: 'get_time', capability: 'time_service', tags: ['system'] }],
};

export const reportSvc = {
  agent_id: 'report-svc-5e6f7a8b',
  name: 'report-svc',
  http_host: '127.0.0.1',
  http_port: 9102,
  tools: [
    {
      function_name: 'make_report',
      capability: 'report_service',
      dependencies: [{ capability: 'time_service', tags: ['system'] }, { capability: 'weather_service' }],
    },
  ],
};
