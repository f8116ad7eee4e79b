#pragma once
// Umbrella header: the whole core library (optimizers, Hessian probe, models).
#include <blockopt/models/mlp.h>
#include <blockopt/optim/adamw.h>
