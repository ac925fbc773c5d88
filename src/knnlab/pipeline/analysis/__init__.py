"""What the stages compute: training, tuning, evaluation, paired significance, error
explanations, the exact reference and predictions of a saved model.
"""
