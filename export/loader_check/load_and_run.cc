// Loads a SavedModel the way tensorflow_model_server does and runs signatures through Session::Run.
//
// Usage:
//   load_and_run --export_dir=DIR --run=SIGNATURE:INPUTS:OUTPUTS [--run=...]... [--op_library=PATH]...
//   load_and_run --export_dir=DIR --inputs=FILE --outputs=FILE [--signature=serving_default]
//
// The model is loaded once; each --run feeds one signature the tensors of an INPUTS file and writes
// its outputs to OUTPUTS. Op libraries (custom kernels such as TF Text's) are loaded with
// TF_LoadLibrary before the model only when given: a core-ops export needs none. After the runs the
// program lists the TF Text libraries mapped into its address space (/proc/self/maps), to show that
// none was loaded behind its back. Inputs and outputs use the "named tensor list" format shared with
// export/loader_check.py: the magic "NTL1", a little-endian uint32 count, then per tensor a uint32 name
// length, the name, a uint64 length and a serialized tensorflow.TensorProto.
//
// Before Session::Run each input's rank is checked against the signature's TensorInfo: a wrong rank
// fails with "INVALID_ARGUMENT: input `NAME` of signature SIG must have rank R, shape [?,8];
// received shape [8]" instead of the message of whichever kernel meets it first ("In[0] is not a
// matrix"). Inner sizes are left to the graph's own checks (the signatures validate them in-graph,
// as the model server does not), so a wrong width still tests the export, not this program.
//
// Output lines: "LOADED_LIBRARIES: n", "RUN_STATUS i: OK" or "RUN_STATUS i: <status>" per run (i from
// 0), "TF_TEXT_MAPPED: n" and one "TF_TEXT_LIBRARY: path" line per mapped TF Text library.
// Exit status: 0 every run ok; 1 bad usage, a failed library load or a failed model load; 2 a
// Session::Run failed (its status, e.g. "INVALID_ARGUMENT: ...", is on its RUN_STATUS line).

#include <cstdint>
#include <fstream>
#include <set>
#include <sstream>
#include <iostream>
#include <map>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "tensorflow/c/c_api.h"
#include "tensorflow/cc/saved_model/loader.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/protobuf/meta_graph.pb.h"
#include "tensorflow/core/public/session.h"

namespace {

constexpr char kMagic[] = "NTL1";

using NamedTensors = std::vector<std::pair<std::string, tensorflow::Tensor>>;

bool ReadExact(std::istream& in, void* data, size_t size) {
  in.read(static_cast<char*>(data), static_cast<std::streamsize>(size));
  return static_cast<size_t>(in.gcount()) == size;
}

bool ReadTensors(const std::string& path, NamedTensors* tensors, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot open inputs file " + path;
    return false;
  }
  char magic[4];
  uint32_t count = 0;
  if (!ReadExact(in, magic, 4) || std::string(magic, 4) != kMagic || !ReadExact(in, &count, 4)) {
    *error = "inputs file " + path + " is not a named tensor list (magic NTL1)";
    return false;
  }
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t name_size = 0;
    uint64_t proto_size = 0;
    std::string name, bytes;
    if (!ReadExact(in, &name_size, 4)) break;
    name.resize(name_size);
    if (!ReadExact(in, name.data(), name_size) || !ReadExact(in, &proto_size, 8)) break;
    bytes.resize(proto_size);
    if (!ReadExact(in, bytes.data(), proto_size)) break;
    tensorflow::TensorProto proto;
    tensorflow::Tensor tensor;
    if (!proto.ParseFromString(bytes) || !tensor.FromProto(proto)) {
      *error = "input " + name + " is not a valid TensorProto";
      return false;
    }
    tensors->emplace_back(name, tensor);
  }
  if (tensors->size() != count) {
    *error = "inputs file " + path + " is truncated";
    return false;
  }
  return true;
}

bool WriteTensors(const std::string& path, const NamedTensors& tensors) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  uint32_t count = static_cast<uint32_t>(tensors.size());
  out.write(kMagic, 4);
  out.write(reinterpret_cast<const char*>(&count), 4);
  for (const auto& [name, tensor] : tensors) {
    tensorflow::TensorProto proto;
    tensor.AsProtoTensorContent(&proto);
    std::string bytes = proto.SerializeAsString();
    uint32_t name_size = static_cast<uint32_t>(name.size());
    uint64_t proto_size = bytes.size();
    out.write(reinterpret_cast<const char*>(&name_size), 4);
    out.write(name.data(), name_size);
    out.write(reinterpret_cast<const char*>(&proto_size), 8);
    out.write(bytes.data(), static_cast<std::streamsize>(proto_size));
  }
  return static_cast<bool>(out);
}

bool Flag(const std::string& arg, const std::string& name, std::string* value) {
  const std::string prefix = "--" + name + "=";
  if (arg.rfind(prefix, 0) != 0) return false;
  *value = arg.substr(prefix.size());
  return true;
}

struct Run {
  std::string signature, inputs, outputs;
};

// "SIGNATURE:INPUTS:OUTPUTS" (paths without ':').
bool ParseRun(const std::string& value, Run* run) {
  const size_t first = value.find(':');
  const size_t second = first == std::string::npos ? first : value.find(':', first + 1);
  if (second == std::string::npos) return false;
  run->signature = value.substr(0, first);
  run->inputs = value.substr(first + 1, second - first - 1);
  run->outputs = value.substr(second + 1);
  return !run->signature.empty() && !run->inputs.empty() && !run->outputs.empty();
}

// "[?,8]" for a signature's shape (-1: any size), "unknown" when its rank is unknown.
std::string ShapeString(const tensorflow::TensorShapeProto& shape) {
  if (shape.unknown_rank()) return "unknown";
  std::string out = "[";
  for (int i = 0; i < shape.dim_size(); ++i) {
    if (i > 0) out += ",";
    out += shape.dim(i).size() < 0 ? "?" : std::to_string(shape.dim(i).size());
  }
  return out + "]";
}

// "[6,8]" for a tensor's shape.
std::string ShapeString(const tensorflow::Tensor& tensor) {
  std::string out = "[";
  for (int i = 0; i < tensor.dims(); ++i) {
    if (i > 0) out += ",";
    out += std::to_string(tensor.dim_size(i));
  }
  return out + "]";
}

// An INVALID_ARGUMENT status naming `alias` when `tensor`'s rank is not the one `info` declares;
// empty when it fits (or the signature leaves the rank open).
std::string CheckRank(const std::string& signature, const std::string& alias,
                      const tensorflow::TensorInfo& info, const tensorflow::Tensor& tensor) {
  const tensorflow::TensorShapeProto& expected = info.tensor_shape();
  if (!info.has_tensor_shape() || expected.unknown_rank()) return "";
  if (tensor.dims() == expected.dim_size()) return "";
  return "INVALID_ARGUMENT: input `" + alias + "` of signature " + signature + " must have rank " +
         std::to_string(expected.dim_size()) + ", shape " + ShapeString(expected) +
         "; received shape " + ShapeString(tensor);
}

// The status of one Session::Run of `signature` on the tensors of `inputs_path`.
std::string RunSignature(const tensorflow::SavedModelBundle& bundle, const Run& run, bool* wrote) {
  *wrote = false;
  const auto& signatures = bundle.meta_graph_def.signature_def();
  const auto found = signatures.find(run.signature);
  if (found == signatures.end()) return "NOT_FOUND: the SavedModel has no signature " + run.signature;
  const tensorflow::SignatureDef& signature = found->second;
  NamedTensors inputs;
  std::string error;
  if (!ReadTensors(run.inputs, &inputs, &error)) return "BAD_REQUEST_FILE: " + error;
  std::vector<std::pair<std::string, tensorflow::Tensor>> feeds;
  for (const auto& [alias, tensor] : inputs) {
    const auto input = signature.inputs().find(alias);
    if (input == signature.inputs().end()) {
      return "INVALID_ARGUMENT: input tensor alias not found in signature: " + alias;
    }
    const std::string rank_error = CheckRank(run.signature, alias, input->second, tensor);
    if (!rank_error.empty()) return rank_error;
    feeds.emplace_back(input->second.name(), tensor);
  }
  std::map<std::string, std::string> sorted_outputs;  // alias -> tensor name, in alias order
  for (const auto& [alias, info] : signature.outputs()) sorted_outputs[alias] = info.name();
  std::vector<std::string> fetches;
  for (const auto& [alias, name] : sorted_outputs) fetches.push_back(name);
  std::vector<tensorflow::Tensor> results;
  absl::Status status = bundle.session->Run(feeds, fetches, {}, &results);
  if (!status.ok()) {
    std::ostringstream message;
    message << status;
    return message.str();
  }
  NamedTensors outputs;
  size_t index = 0;
  for (const auto& [alias, name] : sorted_outputs) outputs.emplace_back(alias, results[index++]);
  *wrote = WriteTensors(run.outputs, outputs);
  return *wrote ? "OK" : "INTERNAL: cannot write outputs file " + run.outputs;
}

// Mapped files whose path names TF Text (its op libraries live in tensorflow_text/python/ops/).
std::set<std::string> MappedTfTextLibraries() {
  std::set<std::string> found;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    if (path.find("tensorflow_text") != std::string::npos) found.insert(path);
  }
  return found;
}

}  // namespace

int main(int argc, char** argv) {
  std::string export_dir, inputs_path, outputs_path, signature_name = "serving_default", value;
  std::vector<std::string> libraries;
  std::vector<Run> runs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (Flag(arg, "export_dir", &export_dir) || Flag(arg, "inputs", &inputs_path) ||
        Flag(arg, "outputs", &outputs_path) || Flag(arg, "signature", &signature_name)) {
      continue;
    }
    if (Flag(arg, "op_library", &value)) {
      libraries.push_back(value);
      continue;
    }
    Run run;
    if (Flag(arg, "run", &value) && ParseRun(value, &run)) {
      runs.push_back(run);
      continue;
    }
    std::cerr << "Unknown or malformed argument: " << arg << "\n";
    return 1;
  }
  if (!inputs_path.empty() && !outputs_path.empty()) {
    runs.push_back({signature_name, inputs_path, outputs_path});
  }
  if (export_dir.empty() || runs.empty()) {
    std::cerr << "Usage: load_and_run --export_dir=DIR --run=SIGNATURE:INPUTS:OUTPUTS [--run=...]"
                 " [--op_library=PATH]...\n";
    return 1;
  }

  for (const auto& library : libraries) {
    TF_Status* status = TF_NewStatus();
    TF_LoadLibrary(library.c_str(), status);
    const bool ok = TF_GetCode(status) == TF_OK;
    if (!ok) std::cerr << "TF_LoadLibrary(" << library << ") failed: " << TF_Message(status) << "\n";
    TF_DeleteStatus(status);
    if (!ok) return 1;
  }
  std::cout << "LOADED_LIBRARIES: " << libraries.size() << "\n";

  tensorflow::SavedModelBundle bundle;
  tensorflow::SessionOptions session_options;
  tensorflow::RunOptions run_options;
  const std::unordered_set<std::string> tags = {"serve"};
  absl::Status load_status =
      tensorflow::LoadSavedModel(session_options, run_options, export_dir, tags, &bundle);
  if (!load_status.ok()) {
    std::cerr << "LoadSavedModel(" << export_dir << ", {serve}) failed: " << load_status << "\n";
    std::cout << "LOAD_STATUS: " << load_status << "\n";
    return 1;
  }
  std::cout << "LOADED: " << export_dir << "\n";

  bool all_ok = true;
  for (size_t i = 0; i < runs.size(); ++i) {
    bool wrote = false;
    std::string status = RunSignature(bundle, runs[i], &wrote);
    // One line per status: the Python side reads the first line of a multi-line message.
    for (char& c : status) {
      if (c == '\n') c = ' ';
    }
    std::cout << "RUN_STATUS " << i << ": " << status << "\n";
    all_ok = all_ok && wrote;
  }
  const std::set<std::string> tf_text = MappedTfTextLibraries();
  std::cout << "TF_TEXT_MAPPED: " << tf_text.size() << "\n";
  for (const auto& path : tf_text) std::cout << "TF_TEXT_LIBRARY: " << path << "\n";
  return all_ok ? 0 : 2;
}
