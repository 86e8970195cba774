// Variance correction for averaged models (Tian et al., "Vanishing Variance", card 4).
//
// Averaging k uncorrelated models shrinks each tensor's spread by about 1/k, which destroys the
// initialisation scale and stalls learning. After averaging, each tensor is rescaled about its
// own mean so that its variance matches the mean variance of the models that were received.
#pragma once
#include <span>
#include <vector>

#include "learning/model.h"

namespace starling {

// Rescales every tensor of `mixed` (with more than one element) to the mean per-model variance of
// that tensor over `received`: out = (out - mean) * sqrt((target + eps) / (var + eps)) + mean.
void correct_variance(Vector& mixed, std::span<const Vector* const> received, const std::vector<Model::Tensor>& tensors,
                      double eps = 1e-4);

}  // namespace starling
