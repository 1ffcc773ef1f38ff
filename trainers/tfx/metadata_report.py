"""What a pipeline recorded in ML Metadata: runs, executions (with their state) and artifacts.

`read(db_path)` turns a SQLite MLMD store into plain dicts, so the pipeline job can print what it
made and tests can check types, URIs, properties, lineage and cache hits without MLMD protos.

Example:
  ```python
  report = metadata_report.read("runs/tfx_pipeline/metadata.sqlite")
  last = report["runs"][-1]
  [(e["node"], e["state"]) for e in last["executions"]]  # [("ItemsExampleGen", "CACHED"), ...]
  ```
"""

from typing import Any, Dict, List

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata


def _value(value: metadata_store_pb2.Value) -> Any:
  which = value.WhichOneof("value")
  return None if which is None else getattr(value, which) if which != "proto" else "<proto>"


def _properties(message) -> Dict[str, Any]:
  out = {key: _value(value) for key, value in message.properties.items()}
  out.update({key: _value(value) for key, value in message.custom_properties.items()})
  return out


def _node_names(store: metadata_store.MetadataStore) -> Dict[int, str]:
  """{execution id: node id} from the `node` contexts (named `<pipeline>.<node id>`)."""
  names = {}
  for context in store.get_contexts_by_type("node"):
    node = context.name.split(".", 1)[-1]
    for execution in store.get_executions_by_context(context.id):
      names[execution.id] = node
  return names


def _executions(store, run_id: int, names, execution_types) -> List[Dict[str, Any]]:
  executions = sorted(store.get_executions_by_context(run_id), key=lambda e: e.id)
  events = store.get_events_by_execution_ids([e.id for e in executions]) if executions else []
  out = []
  for execution in executions:
    mine = [ev for ev in events if ev.execution_id == execution.id]
    out.append(
      {
        "id": execution.id,
        "node": names.get(execution.id, ""),
        "type": execution_types[execution.type_id],
        "state": metadata_store_pb2.Execution.State.Name(execution.last_known_state),
        "inputs": sorted(ev.artifact_id for ev in mine if ev.type == ev.INPUT),
        "outputs": sorted(ev.artifact_id for ev in mine if ev.type == ev.OUTPUT),
        "seconds": (execution.last_update_time_since_epoch - execution.create_time_since_epoch)
        / 1000.0,
        "properties": _properties(execution),
      }
    )
  return out


def read(db_path: str) -> Dict[str, Any]:
  """The store at `db_path` as {"artifact_types", "artifacts", "runs"}.

  Returns:
    A dict with `artifact_types` (sorted names), `artifacts` ({id: {"type", "uri", "state",
    "properties"}}; typed and custom properties together) and `runs` (one per `pipeline_run`
    context, oldest first: {"name", "executions": [{"id", "node", "type", "state", "inputs",
    "outputs", "seconds", "properties"}]}).
  """
  store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(db_path))
  artifact_types = {t.id: t.name for t in store.get_artifact_types()}
  execution_types = {t.id: t.name for t in store.get_execution_types()}
  names = _node_names(store)
  runs = sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)
  return {
    "artifact_types": sorted(artifact_types.values()),
    "artifacts": {
      a.id: {
        "type": artifact_types[a.type_id],
        "uri": a.uri,
        "state": metadata_store_pb2.Artifact.State.Name(a.state),
        "properties": _properties(a),
      }
      for a in store.get_artifacts()
    },
    "runs": [
      {"name": run.name, "executions": _executions(store, run.id, names, execution_types)}
      for run in runs
    ],
  }


def format_run(report: Dict[str, Any], run: int = -1) -> str:
  """One line per execution of a run: node, state, seconds and output artifacts (type, URI)."""
  lines = []
  for execution in report["runs"][run]["executions"]:
    outputs = ", ".join(
      f"{report['artifacts'][a]['type']} {report['artifacts'][a]['uri']}"
      for a in execution["outputs"]
    )
    lines.append(
      f"  {execution['node']:24s} {execution['state']:9s} {execution['seconds']:6.1f}s  {outputs}"
    )
  return "\n".join(lines)
