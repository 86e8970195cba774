// config/: YAML -> RunPlan, validation, overrides; and config errors through the `starling` binary.
#include <gtest/gtest.h>

#include <map>

#include "config/experiment.h"
#include "config/sections.h"
#include "run_util.h"
#include "test_util.h"

#ifndef STARLING_BIN
#error "STARLING_BIN (path of the starling program) must be defined by the build"
#endif

namespace starling {
namespace {

using test::TempDir;

// A small, fast, valid config: synthetic data needs no files.
const std::string kBase = R"yaml(
name: tiny
seed: 3
rounds: 2
data: { dataset: synthetic, clients: 6, max_samples: 80 }
model: { kind: logreg }
train: { lr: 0.05 }
sampling: { fraction: 0.5 }
)yaml";

YAML::Node base_with(const std::vector<std::string>& overrides) { return test::config_with(kBase, overrides); }

// build_run must fail with a ConfigError on `key_path` whose message contains each of `parts`.
void expect_config_error(const YAML::Node& doc, const std::string& key_path, const std::vector<std::string>& parts) {
  try {
    build_run(doc);
    FAIL() << "expected a ConfigError on " << key_path;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), key_path) << e.what();
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(BuildRun, ValidConfigBuildsAPlan) {
  const auto plan = build_run(YAML::Load(kBase));
  EXPECT_EQ(plan->name, "tiny");
  EXPECT_EQ(plan->seed, 3u);
  EXPECT_EQ(plan->rounds, 2);
  EXPECT_EQ(plan->nodes.nodes.size(), 7u);  // server + 6 clients
  ASSERT_NE(plan->model, nullptr);
  EXPECT_EQ(plan->model->num_params(), 60 * 10 + 10);
  EXPECT_EQ(plan->task->partition.size(), 6u);
  EXPECT_EQ(plan->task->batch_size, 32);
  EXPECT_DOUBLE_EQ(plan->sim.network.latency_s, 0.02);
  EXPECT_DOUBLE_EQ(plan->sim.network.uplink_bps, 100e6);
  EXPECT_EQ(plan->sim.seed, 3u);
  EXPECT_EQ(plan->db_path, "results/starling.db");
  EXPECT_EQ(build_run(YAML::Load("data: {dataset: synthetic, clients: 2, max_samples: 60}"), "fallback")->name, "fallback");
}

TEST(BuildRun, ResolvedConfigContainsDefaults) {
  const auto plan = build_run(YAML::Load(kBase));
  const YAML::Node r = YAML::Load(plan->resolved_config);
  EXPECT_EQ(r["name"].as<std::string>(), "tiny");
  EXPECT_EQ(r["rounds"].as<int>(), 2);
  EXPECT_DOUBLE_EQ(r["train"]["lr"].as<double>(), 0.05);
  // Keys the config did not mention, with the values actually used:
  EXPECT_EQ(r["train"]["optimizer"].as<std::string>(), "sgd");
  EXPECT_EQ(r["train"]["batch_size"].as<int>(), 32);
  EXPECT_EQ(r["train"]["local_epochs"].as<int>(), 1);
  EXPECT_DOUBLE_EQ(r["train"]["momentum"].as<double>(), 0.0);
  EXPECT_EQ(r["aggregator"]["kind"].as<std::string>(), "mean");
  EXPECT_EQ(r["server_optimizer"]["kind"].as<std::string>(), "sgd");
  EXPECT_DOUBLE_EQ(r["server_optimizer"]["lr"].as<double>(), 1.0);
  EXPECT_EQ(r["compressor"]["kind"].as<std::string>(), "none");
  EXPECT_EQ(r["protocol"]["kind"].as<std::string>(), "fedavg");
  EXPECT_EQ(r["topology"]["kind"].as<std::string>(), "star");
  EXPECT_EQ(r["sampling"]["kind"].as<std::string>(), "uniform");
  EXPECT_DOUBLE_EQ(r["network"]["latency_ms"].as<double>(), 20.0);
  EXPECT_DOUBLE_EQ(r["network"]["bandwidth_mbps"].as<double>(), 100.0);
  EXPECT_EQ(r["eval"]["every"].as<int>(), 1);
  EXPECT_EQ(r["data"]["partition"]["kind"].as<std::string>(), "natural");
  EXPECT_EQ(r["data"]["max_samples"].as<int>(), 80);
  // The resolved config is itself a valid config that builds the same run.
  const auto again = build_run(r);
  EXPECT_EQ(again->resolved_config, plan->resolved_config);
}

// A deployed run's node processes build it from the coordinator's resolved config: for every
// protocol (and the variants that read more sections), that config builds the same run again.
TEST(BuildRun, ResolvedConfigOfEveryProtocolRebuildsItself) {
  const std::vector<std::vector<std::string>> variants = {
      {"protocol.kind=scaffold"}, {"protocol.kind=scallion", "compressor.kind=randk", "compressor.ratio=0.1"},
      {"protocol.kind=scafcom", "compressor.kind=topk", "compressor.ratio=0.1"}, {"protocol.kind=fedamd"},
      {"protocol.kind=dpsgd", "topology.kind=ring"},
      {"protocol.kind=dpsgd", "topology.kind=ring", "compressor.kind=topk", "compressor.ratio=0.1",
       "protocol.consensus_lr=0.5"},
      {"protocol.kind=dpsgd", "topology.kind=complete", "protocol.aggregation=robust",
       "aggregator.kind=median"},
      {"protocol.kind=dpsgd", "topology.kind=complete", "protocol.aggregation=nna", "protocol.f=1",
       "protocol.wait_for=n_minus_f"},
      {"protocol.kind=gossip", "topology.kind=ring"},
      {"protocol.kind=modest", "protocol.sample=3"},
      {"protocol.kind=zo_shared", "topology.kind=complete"},
      {"protocol.kind=fedbuff"}, {"protocol.kind=fedasync"}, {"protocol.kind=fedfix"}, {"protocol.kind=afa"},
      {"protocol.kind=pfedgate"}};
  for (const auto& overrides : variants) {
    const std::string label = overrides.front() + (overrides.size() > 1 ? " +" + std::to_string(overrides.size() - 1) : "");
    try {
      const auto plan = build_run(base_with(overrides));
      const auto again = build_run(YAML::Load(plan->resolved_config));
      EXPECT_EQ(again->resolved_config, plan->resolved_config) << label;
    } catch (const Error& e) {
      ADD_FAILURE() << label << ": " << e.what();
    }
  }
}

TEST(BuildRun, UnknownKeyNamesPathAndSuggests) {
  expect_config_error(base_with({"rouds=5"}), "rouds", {"unknown key", "did you mean rounds?"});
  expect_config_error(base_with({"train.bach_size=8"}), "train.bach_size", {"did you mean train.batch_size?"});
  expect_config_error(base_with({"network.latency=5"}), "network.latency", {"unknown key"});
  expect_config_error(base_with({"model.hiden=[4]"}), "model.hiden", {"unknown key"});
}

TEST(BuildRun, BadValueNamesKeyAndRange) {
  expect_config_error(base_with({"train.lr=-1"}), "train.lr", {"-1 is out of range; must be > 0"});
  expect_config_error(base_with({"rounds=0"}), "rounds", {"0 is out of range; must be >= 1"});
  expect_config_error(base_with({"sampling.fraction=1.5"}), "sampling.fraction", {"1.5", "out of range"});
  expect_config_error(base_with({"train.batch_size=0"}), "train.batch_size", {"out of range"});
  expect_config_error(base_with({"network.latency_ms=-3"}), "network.latency_ms", {"out of range"});
  expect_config_error(base_with({"model.kind=mlp", "model.hidden=[4, -2]"}), "model.hidden", {"positive"});
}

TEST(BuildRun, WrongTypeNamesKey) {
  expect_config_error(base_with({"rounds=abc"}), "rounds", {"\"abc\" is not an integer"});
  expect_config_error(base_with({"train.lr=fast"}), "train.lr", {"\"fast\" is not a number"});
  expect_config_error(base_with({"network.queueing=sometimes"}), "network.queueing", {"true or false"});
  expect_config_error(base_with({"train=5"}), "train", {"must be a mapping"});
}

TEST(BuildRun, UnknownPluginKindListsKnownNames) {
  expect_config_error(base_with({"aggregator.kind=meen"}), "aggregator.kind",
                      {"aggregator.kind: \"meen\" is unknown aggregator; known: centered_clip, flag, geometric_median, krum, majority_vote, mean, median, multi_krum, nna, trimmed_mean"});
  expect_config_error(base_with({"model.kind=cnnn"}), "model.kind", {"unknown model", "logreg", "mlp"});
  expect_config_error(base_with({"protocol.kind=fedavgg"}), "protocol.kind", {"known: afa, dpsgd, fedamd, fedasync, fedavg, fedbuff, fedfix, gossip, modest, pfedgate, scafcom, scaffold, scallion, zo_shared"});
  expect_config_error(base_with({"data.dataset=mnistt"}), "data.dataset", {"known: fashion_mnist, synthetic"});
  expect_config_error(base_with({"data.partition.kind=diriclet"}), "data.partition.kind", {"dirichlet"});
  expect_config_error(base_with({"downlink_compressor.kind=topk", "downlink_compressor.feedback=ef21"}),
                      "downlink_compressor.feedback", {"every receiver"});
  expect_config_error(base_with({"compressor.kind=topkk"}), "compressor.kind", {"known: bf16, count_sketch, fp16, none, powersgd, qsgd, randk, random_projection, sign, topk"});
  expect_config_error(base_with({"compute.kind=gaussian"}), "compute.kind", {"known: fixed, lognormal"});
}

TEST(BuildRun, OverridesChangeValues) {
  const auto plan = build_run(base_with({"rounds=7", "train.batch_size=8", "network.latency_ms=5",
                                         "sampling.fraction=1.0", "name=overridden", "data.clients=4"}));
  EXPECT_EQ(plan->rounds, 7);
  EXPECT_EQ(plan->name, "overridden");
  EXPECT_EQ(plan->task->batch_size, 8);
  EXPECT_DOUBLE_EQ(plan->sim.network.latency_s, 0.005);
  EXPECT_EQ(plan->nodes.nodes.size(), 5u);
  const YAML::Node r = YAML::Load(plan->resolved_config);
  EXPECT_EQ(r["train"]["batch_size"].as<int>(), 8);
  EXPECT_DOUBLE_EQ(r["sampling"]["fraction"].as<double>(), 1.0);
}

TEST(BuildRun, PartitionersApplyToSyntheticData) {
  const auto plan = build_run(base_with({"data.partition.kind=iid"}));
  std::size_t total = 0;
  for (const auto& p : plan->task->partition) total += p.size();
  EXPECT_EQ(total, static_cast<std::size_t>(plan->data->train.size()));
}

TEST(LoadConfig, ReadsFileAndAppliesOverrides) {
  TempDir dir;
  const auto path = dir.write("c.yaml", kBase);
  const YAML::Node doc = load_config(path, {"rounds=11", "train.lr=0.2"});
  EXPECT_EQ(doc["rounds"].as<int>(), 11);
  EXPECT_DOUBLE_EQ(doc["train"]["lr"].as<double>(), 0.2);
  EXPECT_EQ(doc["name"].as<std::string>(), "tiny");
  EXPECT_THROW(load_config(dir.file("missing.yaml"), {}), ConfigError);
  const auto bad = dir.write("bad.yaml", "rounds: [1, 2\n");
  EXPECT_THROW(load_config(bad, {}), ConfigError);
  const auto list = dir.write("list.yaml", "- 1\n- 2\n");
  EXPECT_THROW(load_config(list, {}), ConfigError);
  EXPECT_THROW(load_config(path, {"rounds"}), ConfigError);
}

// ---------------------------------------------------------------- through the binary

TEST(Cli, UnknownKeyExitsTwoAndStderrNamesTheKey) {
  TempDir dir;
  const auto cfg = dir.write("bad.yaml", kBase + "rouds: 5\n");
  const auto r = test::run_process({STARLING_BIN, "run", cfg, "--db", dir.file("r.db"), "--quiet"}, dir);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("rouds"), std::string::npos) << "stderr: " << r.err << "\nstdout: " << r.out;
  EXPECT_NE(r.err.find("did you mean rounds?"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("r.db")));  // no run was started
}

TEST(Cli, BadValueFromSetExitsTwoAndNamesTheKey) {
  TempDir dir;
  const auto cfg = dir.write("ok.yaml", kBase);
  const auto r = test::run_process({STARLING_BIN, "run", cfg, "--set", "train.lr=-1", "--db", dir.file("r.db"), "--quiet"}, dir);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("train.lr"), std::string::npos) << "stderr: " << r.err << "\nstdout: " << r.out;
  EXPECT_NE(r.err.find("out of range"), std::string::npos) << r.err;
  const auto t = test::run_process({STARLING_BIN, "run", cfg, "--set", "aggregator.kind=meen", "--db", dir.file("r.db")}, dir);
  EXPECT_EQ(t.exit_code, 2);
  EXPECT_NE(t.err.find("aggregator.kind: \"meen\" is unknown aggregator; known: centered_clip, flag, geometric_median, krum, majority_vote, mean, median, multi_krum, nna, trimmed_mean"), std::string::npos) << t.err;
}

TEST(Cli, UsageErrorsExitTwo) {
  TempDir dir;
  EXPECT_EQ(test::run_process({STARLING_BIN, "run", dir.file("missing.yaml"), "--quiet"}, dir).exit_code, 2);
  EXPECT_EQ(test::run_process({STARLING_BIN}, dir).exit_code, 2);
  EXPECT_EQ(test::run_process({STARLING_BIN, "frobnicate"}, dir).exit_code, 2);
  const auto cfg = dir.write("ok.yaml", kBase);
  EXPECT_EQ(test::run_process({STARLING_BIN, "run", cfg, "--threads", "0"}, dir).exit_code, 2);
  EXPECT_EQ(test::run_process({STARLING_BIN, "run", cfg, "--set", "novalue"}, dir).exit_code, 2);
  const auto runs = test::run_process({STARLING_BIN, "runs", "--db", dir.file("none.db")}, dir);
  EXPECT_EQ(runs.exit_code, 2);
  EXPECT_NE(runs.err.find("none.db"), std::string::npos) << runs.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("none.db")));  // read-only commands never create a database
  const auto version = test::run_process({STARLING_BIN, "--version"}, dir);
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.out.find(STARLING_VERSION), std::string::npos);
}


// ---------------------------------------------------------------- sweeps

TEST(Sweep, GridTimesRepeatsFirstKeyOutermostWithConsecutiveSeeds) {
  const auto plan = expand_sweep(YAML::Load("{repeat: 2, grid: {train.lr: [0.1, 0.2], model.hidden: [[8], [16, 4]]}}"),
                                 "base", 40);
  EXPECT_EQ(plan.name, "base");
  ASSERT_EQ(plan.runs.size(), 8u);
  const std::vector<std::string> lrs = {"0.1", "0.1", "0.1", "0.1", "0.2", "0.2", "0.2", "0.2"};
  const std::vector<std::string> hidden = {"[8]", "[8]", "[16, 4]", "[16, 4]", "[8]", "[8]", "[16, 4]", "[16, 4]"};
  for (std::size_t i = 0; i < plan.runs.size(); ++i) {
    const auto& r = plan.runs[i];
    ASSERT_EQ(r.params.size(), 2u);
    EXPECT_EQ(r.params[0], (std::pair<std::string, std::string>{"train.lr", lrs[i]}));
    EXPECT_EQ(r.params[1], (std::pair<std::string, std::string>{"model.hidden", hidden[i]}));
    EXPECT_EQ(r.repeat, static_cast<int>(i % 2));
    EXPECT_EQ(r.seed, 40u + i % 2);
  }
}

TEST(Sweep, CasesSetSeveralKeysTogetherTimesTheGrid) {
  const auto plan = expand_sweep(
      YAML::Load("{cases: [{compressor.kind: none}, {compressor.kind: topk, compressor.ratio: 0.01}], "
                 "grid: {train.lr: [0.1, 0.2]}}"),
      "base", 0);
  ASSERT_EQ(plan.runs.size(), 4u);
  using KV = std::pair<std::string, std::string>;
  EXPECT_EQ(plan.runs[0].params, (KeyValues{KV{"compressor.kind", "none"}, KV{"train.lr", "0.1"}}));
  EXPECT_EQ(plan.runs[3].params,
            (KeyValues{KV{"compressor.kind", "topk"}, KV{"compressor.ratio", "0.01"}, KV{"train.lr", "0.2"}}));
}

TEST(Sweep, NoGridMeansRepeatsOfTheBaseConfig) {
  const auto plan = expand_sweep(YAML::Load("{name: seeds, repeat: 3}"), "base", 0);
  EXPECT_EQ(plan.name, "seeds");
  ASSERT_EQ(plan.runs.size(), 3u);
  EXPECT_TRUE(plan.runs[2].params.empty());
  EXPECT_EQ(plan.runs[2].seed, 2u);
}

TEST(Sweep, BadSectionsNameTheKey) {
  const auto message = [](const std::string& yaml) {
    try {
      expand_sweep(YAML::Load(yaml), "x", 0);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("{grid: {train.lr: []}}").find("sweep.grid.train.lr"), std::string::npos);
  EXPECT_NE(message("{grid: {train.lr: 0.1}}").find("non-empty list"), std::string::npos);
  EXPECT_NE(message("{repeat: 0}").find("sweep.repeat"), std::string::npos);
  EXPECT_NE(message("{repet: 2}").find("did you mean sweep.repeat"), std::string::npos);
  EXPECT_NE(message("{grid: {seed: [1, 2]}}").find("sweep.repeat"), std::string::npos);
  EXPECT_NE(message("{grid: [1, 2]}").find("sweep.grid"), std::string::npos);
  EXPECT_NE(message("{cases: []}").find("sweep.cases"), std::string::npos);
  EXPECT_NE(message("{cases: [{compressor.kind: none}, 3]}").find("sweep.cases[1]"), std::string::npos);
  EXPECT_NE(message("{cases: [{train.lr: 1}], grid: {train.lr: [1, 2]}}").find("also a grid key"), std::string::npos);
}

TEST(Sweep, TakeSweepSplitsTheDocument) {
  YAML::Node doc = YAML::Load(kBase + "sweep: {repeat: 2}\n");
  const YAML::Node sweep = take_sweep(doc);
  ASSERT_TRUE(sweep.IsDefined());
  EXPECT_EQ(sweep["repeat"].as<int>(), 2);
  EXPECT_FALSE(doc["sweep"].IsDefined());
  EXPECT_NO_THROW(build_run(doc));  // what is left is an ordinary config
  YAML::Node plain = YAML::Load(kBase);
  EXPECT_FALSE(take_sweep(plain).IsDefined());
}

TEST(Config, FlattenedConfigValuesMatchTheResolvedConfig) {
  const auto plan = build_run(base_with({"model.kind=mlp", "model.hidden=[7, 5]"}));
  std::map<std::string, std::string> values(plan->config_values.begin(), plan->config_values.end());
  EXPECT_EQ(values.at("train.lr"), "0.05");
  EXPECT_EQ(values.at("model.hidden"), "[7, 5]");
  EXPECT_EQ(values.at("data.clients"), "6");
  EXPECT_EQ(values.at("network.latency_ms"), "20");  // defaults are recorded too
}

// The quick start's shape: a Dirichlet partition with its alpha, FedAvg with its sections.
const std::string kQuickstartLike = R"yaml(
rounds: 2
data: { dataset: synthetic, clients: 8, max_samples: 60, partition: { kind: dirichlet, alpha: 0.5 } }
model: { kind: logreg }
sampling: { kind: uniform, fraction: 0.5 }
aggregator: { kind: mean }
server_optimizer: { kind: sgd, lr: 1.0 }
)yaml";

TEST(KindSwitch, SettingAnotherKindDropsTheOldKindsKeysAndSaysSo) {
  YAML::Node doc = YAML::Load(kQuickstartLike);
  const auto notes = apply_overrides(doc, {"data.partition.kind=shards"});
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("drops data.partition.alpha"), std::string::npos) << notes[0];
  EXPECT_FALSE(doc["data"]["partition"]["alpha"]);
  const auto plan = build_run(doc);
  EXPECT_NE(plan->resolved_config.find("shards_per_client"), std::string::npos);
  // Without the switch logic the old key would be "unknown": the plain override keeps it.
  YAML::Node raw = YAML::Load(kQuickstartLike);
  Section::apply_override(raw, "data.partition.kind=shards");
  expect_config_error(raw, "data.partition.alpha", {"is a key of dirichlet", "data.partition.kind is shards"});
}

TEST(KindSwitch, AProtocolSwitchDropsTheSectionsOnlyTheOldProtocolReads) {
  YAML::Node doc = YAML::Load(kQuickstartLike);
  const auto notes = apply_overrides(doc, {"protocol.kind=gossip"});
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("drops sampling, aggregator, server_optimizer"), std::string::npos) << notes[0];
  EXPECT_NO_THROW(build_run(doc));
  // Keys the new kind shares stay: fedavg -> scaffold keeps every section.
  YAML::Node kept = YAML::Load(kQuickstartLike);
  EXPECT_TRUE(apply_overrides(kept, {"protocol.kind=scaffold"}).empty());
  EXPECT_TRUE(kept["sampling"] && kept["aggregator"]);
}

TEST(KindSwitch, ASweepGridOverPartitionKindsBuildsEveryPoint) {
  const auto sweep = expand_sweep(YAML::Load("{grid: {data.partition.kind: [iid, dirichlet, shards]}}"), "kinds", 0);
  ASSERT_EQ(sweep.runs.size(), 3u);
  for (const auto& run : sweep.runs) {
    YAML::Node doc = YAML::Load(kQuickstartLike);
    std::vector<std::string> assignments;
    for (const auto& [key, value] : run.params) assignments.push_back(key + "=" + value);
    apply_overrides(doc, assignments);
    EXPECT_NO_THROW(build_run(doc)) << assignments.front();
  }
}

TEST(Strictness, ASectionTheProtocolDoesNotReadIsRefused) {
  expect_config_error(test::config_with(kQuickstartLike, {"protocol.kind=gossip", "aggregator.kind=krum"}), "aggregator",
                      {"not read by protocol gossip", "remove it, or use one of: ", "dpsgd"});
  expect_config_error(test::config_with(kQuickstartLike, {"protocol.kind=dpsgd", "sampling.fraction=1"}), "sampling",
                      {"not read by protocol dpsgd"});
}

TEST(Strictness, AKeyOfAnotherKindIsToldFromATypo) {
  expect_config_error(base_with({"compressor.ratio=0.1"}), "compressor.ratio",
                      {"is a key of count_sketch, randk, random_projection, topk", "compressor.kind is none"});
  expect_config_error(base_with({"compressor.kind=topk", "compressor.ratoi=0.1"}), "compressor.ratoi",
                      {"unknown key", "did you mean compressor.ratio?"});
  expect_config_error(base_with({"compressor.ratoi=0.1"}), "compressor.ratoi", {"did you mean compressor.ratio?"});
}

TEST(Strictness, DuplicateYamlKeysAreRefusedWithTheirLines) {
  TempDir dir;
  const auto path = dir.write("dup.yaml", "rounds: 2\ndata:\n  clients: 4\n  clients: 5\n");
  try {
    load_config(path, {});
    FAIL() << "a duplicate key was accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), "data.clients");
    EXPECT_NE(std::string(e.what()).find(path + ":4: the key appears twice in one mapping (first on line 3)"),
              std::string::npos)
        << e.what();
  }
}

TEST(Strictness, UnsetRemovesAKeyAndRefusesOneTheConfigLacks) {
  TempDir dir;
  const auto path = dir.write("c.yaml", kQuickstartLike);
  const YAML::Node doc = load_config(path, {"train.lr=0.2"}, {"data.partition.alpha", "train.lr"});
  EXPECT_FALSE(doc["data"]["partition"]["alpha"]);
  EXPECT_FALSE(doc["train"]["lr"]);
  EXPECT_TRUE(doc["data"]["partition"]["kind"]);
  EXPECT_THROW(load_config(path, {}, {"data.partition.beta"}), ConfigError);
  EXPECT_THROW(load_config(path, {}, {"data..x"}), ConfigError);
}

}  // namespace
}  // namespace starling
