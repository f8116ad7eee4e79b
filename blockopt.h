#pragma once
// Umbrella header: the whole core library (optimizers, Hessian probe, models).
#include <blockopt/hessian/estimators.h>
#include <blockopt/hessian/operator.h>
#include <blockopt/hessian/partition.h>
#include <blockopt/models/cnn.h>
#include <blockopt/models/corpus.h>
#include <blockopt/models/fashion_mnist.h>
#include <blockopt/models/gpt.h>
#include <blockopt/models/mlp.h>
#include <blockopt/models/text.h>
#include <blockopt/optim/adam_mini.h>
#include <blockopt/optim/adamw.h>
#include <blockopt/optim/asgo.h>
#include <blockopt/optim/muon.h>
#include <blockopt/optim/normuon.h>
#include <blockopt/optim/partition.h>
#include <blockopt/optim/routing.h>
