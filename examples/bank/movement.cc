#include <cmath>

#include "bank.h"

namespace txcoord::examples::bank {

Result<Movement> ParseMovement(const google::protobuf::Value& payload) {
  if (payload.kind_case() != google::protobuf::Value::kStructValue) {
    return Status::InvalidArgument(
        "the payload must be an object {\"account\": \"A\", \"delta\": -30}");
  }
  const auto& fields = payload.struct_value().fields();
  const auto account = fields.find("account");
  const auto delta = fields.find("delta");
  if (account == fields.end() ||
      account->second.kind_case() != google::protobuf::Value::kStringValue ||
      account->second.string_value().empty()) {
    return Status::InvalidArgument("the payload needs \"account\", a non-empty string");
  }
  // Amounts are whole units and small enough to be exact in a JSON number.
  constexpr double kMaxAmount = 1e15;
  if (delta == fields.end() || delta->second.kind_case() != google::protobuf::Value::kNumberValue ||
      std::trunc(delta->second.number_value()) != delta->second.number_value() ||
      std::fabs(delta->second.number_value()) > kMaxAmount || delta->second.number_value() == 0) {
    return Status::InvalidArgument("the payload needs \"delta\", a non-zero whole number");
  }
  return Movement{account->second.string_value(),
                  static_cast<int64_t>(delta->second.number_value())};
}

}  // namespace txcoord::examples::bank
