#pragma once
// Umbrella header: the whole library (blockopt::blockopt): optimizers, Hessian probe, models,
// data sets and data-parallel training over c10d.
#include <blockopt/data/corpus.h>
#include <blockopt/data/fashion_mnist.h>
#include <blockopt/data/gaussian.h>
#include <blockopt/data/text.h>
#include <blockopt/distributed/data_parallel.h>
#include <blockopt/distributed/launch_environment.h>
#include <blockopt/distributed/process_group.h>
#include <blockopt/hessian/estimators.h>
#include <blockopt/hessian/mlp_hessian.h>
#include <blockopt/hessian/operator.h>
#include <blockopt/hessian/partition.h>
#include <blockopt/models/cnn.h>
#include <blockopt/models/gpt.h>
#include <blockopt/models/mlp.h>
#include <blockopt/optim/adam_mini.h>
#include <blockopt/optim/adamw.h>
#include <blockopt/optim/asgo.h>
#include <blockopt/optim/aurora.h>
#include <blockopt/optim/muon.h>
#include <blockopt/optim/normuon.h>
#include <blockopt/optim/partition.h>
#include <blockopt/optim/routing.h>
