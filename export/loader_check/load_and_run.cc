// Loads a SavedModel the way tensorflow_model_server does and runs one signature through Session::Run.
//
// Usage:
//   load_and_run --export_dir=DIR --inputs=FILE --outputs=FILE [--signature=serving_default]
//                [--op_library=PATH]...
//
// The op libraries (TF Text's kernels) are loaded with TF_LoadLibrary before the model, as the model
// server has them linked in. Inputs and outputs use the "named tensor list" format shared with
// export/loader_check.py: the magic "NTL1", a little-endian uint32 count, then per tensor a uint32 name
// length, the name, a uint64 length and a serialized tensorflow.TensorProto.
//
// Exit status: 0 ok; 1 bad usage, a failed library load or a failed model load; 2 Session::Run failed
// (the status, e.g. "INVALID_ARGUMENT: ...", is printed on a line starting with "RUN_STATUS:").

#include <cstdint>
#include <fstream>
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

}  // namespace

int main(int argc, char** argv) {
  std::string export_dir, inputs_path, outputs_path, signature_name = "serving_default", value;
  std::vector<std::string> libraries;
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
    std::cerr << "Unknown argument: " << arg << "\n";
    return 1;
  }
  if (export_dir.empty() || inputs_path.empty() || outputs_path.empty()) {
    std::cerr << "Usage: load_and_run --export_dir=DIR --inputs=FILE --outputs=FILE"
                 " [--signature=NAME] [--op_library=PATH]...\n";
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
    return 1;
  }
  const auto& signatures = bundle.meta_graph_def.signature_def();
  const auto found = signatures.find(signature_name);
  if (found == signatures.end()) {
    std::cerr << "The SavedModel has no signature " << signature_name << "\n";
    return 1;
  }
  const tensorflow::SignatureDef& signature = found->second;
  std::cout << "LOADED: " << export_dir << " signature=" << signature_name << "\n";

  NamedTensors inputs;
  std::string error;
  if (!ReadTensors(inputs_path, &inputs, &error)) {
    std::cerr << error << "\n";
    return 1;
  }
  std::vector<std::pair<std::string, tensorflow::Tensor>> feeds;
  for (const auto& [alias, tensor] : inputs) {
    const auto input = signature.inputs().find(alias);
    if (input == signature.inputs().end()) {
      std::cout << "RUN_STATUS: INVALID_ARGUMENT: input tensor alias not found in signature: " << alias
                << "\n";
      return 2;
    }
    feeds.emplace_back(input->second.name(), tensor);
  }
  std::map<std::string, std::string> sorted_outputs;  // alias -> tensor name, in alias order
  for (const auto& [alias, info] : signature.outputs()) sorted_outputs[alias] = info.name();
  std::vector<std::string> fetches;
  for (const auto& [alias, name] : sorted_outputs) fetches.push_back(name);

  std::vector<tensorflow::Tensor> results;
  absl::Status run_status = bundle.session->Run(feeds, fetches, {}, &results);
  if (!run_status.ok()) {
    std::cout << "RUN_STATUS: " << run_status << "\n";
    return 2;
  }
  std::cout << "RUN_STATUS: OK\n";
  NamedTensors outputs;
  size_t index = 0;
  for (const auto& [alias, name] : sorted_outputs) {
    std::cout << "OUTPUT " << alias << " " << results[index].DebugString(8) << "\n";
    outputs.emplace_back(alias, results[index++]);
  }
  if (!WriteTensors(outputs_path, outputs)) {
    std::cerr << "cannot write outputs file " << outputs_path << "\n";
    return 1;
  }
  return 0;
}
