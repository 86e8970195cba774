#include "nodes/message.h"

namespace starling {

const char* to_string(MessageKind kind) {
  switch (kind) {
    case MessageKind::kModel: return "model";
    case MessageKind::kUpdate: return "update";
  }
  return "unknown";
}

}  // namespace starling
