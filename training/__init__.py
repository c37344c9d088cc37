"""The recipe that produced models/sts-hash-nano: data loading, teacher labelling, distillation, fine-tuning."""
