#pragma once
// The subcommands of the robustlab executable. Each parses its own flags (with --help) and returns
// the process exit code; errors are thrown and reported once by main().
namespace robustlab {

int cmdTrain(int argc, char** argv);
int cmdPretrain(int argc, char** argv);
int cmdFinetune(int argc, char** argv);
int cmdAttack(int argc, char** argv);
int cmdRun(int argc, char** argv);
int cmdConvert(int argc, char** argv);
int cmdBench(int argc, char** argv);
int cmdReport(int argc, char** argv);
int cmdSweep(int argc, char** argv);
int cmdConfig(int argc, char** argv);

}  // namespace robustlab
